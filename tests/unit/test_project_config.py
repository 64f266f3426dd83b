"""langgraph.json projects (runqueue.langgraph.project): read, checked, registered on an app,
and refused in one line naming the file and the entry."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from langgraph.pregel import Pregel

from runqueue import Settings, create_app
from runqueue.errors import ProjectConfigError, SettingsError
from runqueue.langgraph.project import parse_env, read_env_file, read_project, register_project
from runqueue.worker.queues import served_assistants
from tests.support import REPO_ROOT

CHAT = REPO_ROOT / "tests" / "projects" / "chat"
GRAPH = """
from typing import TypedDict
from langgraph.graph import START, StateGraph

class State(TypedDict):
    n: int

def step(state: State) -> State:
    return {"n": state["n"] + 1}

builder = StateGraph(State).add_node(step).add_edge(START, "step")
compiled = builder.compile()
not_a_graph = 42
"""


def project(tmp_path: Path, config: object, files: dict[str, str] | None = None) -> Path:
    """A project folder: its langgraph.json (`config`) and files (path: text)."""
    for name, text in {"graph.py": GRAPH, **(files or {})}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / "langgraph.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def new_app(tmp_path: Path):  # noqa: ANN201
    return create_app(Settings(data_dir=tmp_path / "data"), name=f"project-{tmp_path.name}")


def test_the_test_project_reads_as_langgraph_dev_reads_it():
    from langgraph_cli.config import validate_config_file

    validate_config_file(CHAT / "langgraph.json")  # the reference CLI accepts it as it is
    read = read_project(CHAT / "langgraph.json")
    assert [(g.name, g.source, g.is_file) for g in read.graphs] == [
        ("greeter", "./src/agent/graph.py:graph", True),
        ("shouter", "agent.shouting:builder", False),
        ("counter", "./factory.py:make_graph", True),
        ("replier", "./src/agent/replier.py:graph", True),
        ("styled", "./factory.py:make_styled", True),
    ]
    assert read.graphs[2].description == "Counts the letters of a name."
    # The file's folder, then the path dependencies; the package name is pip's.
    assert read.import_paths == (CHAT, CHAT, CHAT / "src")
    assert read.env == {
        "GREETING": "Hello",
        "PUNCTUATION": "!",
        "SHADOWED": "from-the-env-file",
        "RUNQUEUE_QUEUE": "not-a-setting",
    }


def test_an_app_built_from_a_project_registers_exactly_its_graphs(tmp_path, monkeypatch):
    monkeypatch.setenv("SHADOWED", "from-the-process")
    monkeypatch.delenv("GREETING", raising=False)
    monkeypatch.delenv("PUNCTUATION", raising=False)
    monkeypatch.delenv("RUNQUEUE_QUEUE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    app = new_app(tmp_path)
    tasks = register_project(app, CHAT / "langgraph.json")
    assert served_assistants(app) == ["counter", "greeter", "replier", "shouter", "styled"]
    graphs = {task.name: task.graph() for task in tasks}  # factories: with an empty config
    assert all(isinstance(graph, Pregel) for graph in graphs.values())  # a StateGraph compiled
    assert graphs["shouter"].checkpointer is None  # runqueue gives each run its own
    for factory in ("counter", "styled"):  # handed over as they are, for runqueue to call
        assert inspect.isfunction(app.tasks[factory].graph_source)
    assert app.tasks["counter"].__doc__ == "Counts the letters of a name."
    config = {"configurable": {"thread_id": "t1"}}
    replies = {
        name: asyncio.run(graph.ainvoke({"name": "Ada"}, config))["reply"]
        for name, graph in graphs.items()
    }
    assert replies == {
        # The env file filled the environment; the process's own SHADOWED won.
        "greeter": "Hello, Ada! (from-the-process)",
        "shouter": "ADA",
        "counter": "3",
        "replier": "Ada, awaited on thread t1",  # an async node
        "styled": "plain: Ada",  # the factory's default style, for an empty config
    }
    assert os.environ["SHADOWED"] == "from-the-process"
    assert "RUNQUEUE_QUEUE" not in os.environ  # never a setting from the project's env
    assert str(CHAT / "src") in sys.path


def test_env_as_a_mapping_and_a_module_path_without_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("PROJECT_TEST_COLOUR", raising=False)
    path = project(
        tmp_path,
        {"graphs": {"found": "./graph.py:"}, "env": {"PROJECT_TEST_COLOUR": "blue"}},
    )
    app = new_app(tmp_path)
    (task,) = register_project(app, path)
    assert os.environ["PROJECT_TEST_COLOUR"] == "blue"
    assert task.graph().invoke({"n": 1}) == {"n": 2}  # the module's compiled graph


def test_a_project_module_is_not_shadowed_by_an_installed_package(tmp_path, monkeypatch):
    """`humanize` is installed here: the project's own src/humanize.py must be the one imported."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "humanize", raising=False)
    path = project(
        tmp_path,
        {"dependencies": ["./src"], "graphs": {"shadowed": "humanize:compiled"}},
        files={"src/humanize.py": GRAPH},
    )
    try:
        (task,) = register_project(new_app(tmp_path), path)
        assert task.graph().invoke({"n": 1}) == {"n": 2}
        assert sys.modules["humanize"].__file__ == str(tmp_path / "src" / "humanize.py")
    finally:
        sys.modules.pop("humanize", None)


def test_the_small_env_parser_reads_what_dotenv_reads(tmp_path):
    from dotenv import dotenv_values

    text = (
        '# a comment\n\nPLAIN=value\nexport EXPORTED=yes\nDOUBLE="two words"\n'
        "SINGLE='it # is'\nCOMMENTED=kept # dropped\nSPACED = around \n"
    )
    (tmp_path / ".env").write_text(text)
    expected = dict(dotenv_values(tmp_path / ".env"))
    assert parse_env(text) == expected == read_env_file(tmp_path / ".env")
    assert expected["COMMENTED"] == "kept" and expected["SINGLE"] == "it # is"


BAD_PROJECTS = [
    ("{not json", "", "cannot read it as JSON"),
    ('{"graphs": ' + '{"a": ' * 100_000 + "{}" + "}" * 100_001, "", "nests too deep"),
    ({"graphs": {}}, "", 'needs "graphs"'),
    ({"graphs": {"g": "./graph.py"}}, "graphs.g", "./file.py:variable"),
    ({"graphs": {"g": {"path": 3}}}, "graphs.g", "./file.py:variable"),
    ({"graphs": {"g": "./missing.py:graph"}}, "graphs.g", "no such file"),
    ({"graphs": {"g": "./graph.ts:graph"}}, "graphs.g", "JavaScript graphs"),
    ({"graphs": {"bad name": "./graph.py:compiled"}}, "graphs.bad name", "assistant name"),
    ({"graphs": {"g": "./graph.py:nothing"}}, "graphs.g", "has no 'nothing'"),
    ({"graphs": {"g": "./graph.py:not_a_graph"}}, "graphs.g", "is a int, not a compiled graph"),
    ({"graphs": {"g": "./broken.py:graph"}}, "graphs.g", "ZeroDivisionError"),
    ({"graphs": {"g": "no_such_module_xyz:graph"}}, "graphs.g", "ModuleNotFoundError"),
    ({"graphs": {"g": "./graph.py:compiled"}, "dependencies": ["./gone"]}, "dependencies", ""),
    ({"graphs": {"g": "./graph.py:compiled"}, "dependencies": "."}, "dependencies", "a list"),
    ({"graphs": {"g": "./graph.py:compiled"}, "env": {"N": 1}}, "env.N", "strings"),
    ({"graphs": {"g": "./graph.py:compiled"}, "env": 3}, "env", ".env file"),
]


@pytest.mark.parametrize(("config", "entry", "says"), BAD_PROJECTS)
def test_a_bad_project_is_refused_naming_the_file_and_the_entry(
    tmp_path, monkeypatch, config, entry, says
):
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = project(tmp_path, config, {"broken.py": "1 / 0\n"})
    with pytest.raises(ProjectConfigError) as raised:
        register_project(new_app(tmp_path), path)
    error = raised.value
    assert isinstance(error, SettingsError)
    assert error.path == str(path) and error.entry.startswith(entry)
    assert str(error).startswith(f"{path}: ") and says in str(error)
    assert "\n" not in str(error)


def test_a_missing_config_file_and_a_missing_env_file(tmp_path, caplog):
    with pytest.raises(ProjectConfigError, match="no such file"):
        read_project(tmp_path / "langgraph.json")
    path = project(tmp_path, {"graphs": {"g": "./graph.py:compiled"}, "env": ".env"})
    assert read_project(path).env == {}  # as `langgraph dev`: a warning, not a refusal
    assert "env file" in caplog.text and "not found" in caplog.text


def test_app_and_config_together_are_refused():
    with pytest.raises(SettingsError, match="not both"):
        Settings(app="chat:app", config="langgraph.json")


def test_the_cli_says_a_bad_project_in_one_line(tmp_path):
    from runqueue.cli import main

    path = project(tmp_path, {"graphs": {"g": "./graph.py:nothing"}})
    env = {"RUNQUEUE_DATA_DIR": str(tmp_path / "data"), "RUNQUEUE_APP": ""}
    result = CliRunner().invoke(main, ["--config", str(path), "assistants"], env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {path}: graphs.g: ./graph.py has no 'nothing'"]


def test_an_unknown_assistant_names_the_project_it_was_looked_up_in(tmp_path):
    from runqueue.cli import main

    path = project(tmp_path, {"graphs": {"g": "./graph.py:compiled"}})
    env = {"RUNQUEUE_DATA_DIR": str(tmp_path / "data"), "RUNQUEUE_APP": ""}
    assert CliRunner().invoke(main, ["--config", str(path), "migrate"], env=env).exit_code == 0
    result = CliRunner().invoke(
        main, ["--config", str(path), "submit", "nope", "--thread", "t-1"], env=env
    )
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: unknown assistant 'nope' (registered: g"), line
    assert line.endswith(f"(now the project {path})"), line


def test_the_cli_lists_a_projects_graphs(tmp_path):
    env = {"RUNQUEUE_DATA_DIR": str(tmp_path / "data"), "RUNQUEUE_APP": ""}
    done = subprocess.run(
        [sys.executable, "-m", "runqueue", "--config", "langgraph.json", "assistants", "--json"],
        cwd=CHAT,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNQUEUE_")} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(a["name"], a["kind"]) for a in listed] == [
        (name, "graph") for name in ("counter", "greeter", "replier", "shouter", "styled")
    ]


def test_a_project_without_the_langgraph_extra_names_the_extra(tmp_path):
    path = project(tmp_path, {"graphs": {"g": "./graph.py:compiled"}})
    script = """
import sys
for name in ("langgraph", "langchain_core"):
    sys.modules[name] = None  # as if not installed
from runqueue import ExtraNotInstalledError, Settings
from runqueue.registry.base import app_for
try:
    app_for(Settings(data_dir=sys.argv[1], config=sys.argv[2]))
except ExtraNotInstalledError as error:
    print(error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'runqueue[langgraph]'" in done.stdout

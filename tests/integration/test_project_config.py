"""A LangGraph project folder (tests/projects/chat: its own langgraph.json, a graph file, a
module StateGraph, a factory, an env file) served by real `runqueue --config ... worker` and
`runqueue --config ... serve` processes, driven by the official Python SDK."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from runqueue.registry.assistants import default_assistant_id
from tests.api_support import ServerProcess, api_server
from tests.conftest import BACKENDS, require_services
from tests.support import REPO_ROOT, Backend, WorkerProcess, make_backend, settings_env

pytestmark = pytest.mark.integration

PROJECT = REPO_ROOT / "tests" / "projects" / "chat"
DECLARED = ["counter", "greeter", "replier", "shouter", "styled"]  # its langgraph.json's graphs
WORKER_ENV = {"SHADOWED": "from-the-worker"}  # the process environment wins over project.env


@pytest.fixture(scope="module", params=BACKENDS)
def project_backend(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Backend]:  # noqa: ANN001
    if request.param != "embedded":
        require_services()
    backend = make_backend(
        request.param,
        tmp_path_factory.mktemp(f"project-{request.param}"),
        config=str(PROJECT / "langgraph.json"),
        imports="",  # exactly the project's graphs, nothing else
        api_auth="off",  # the server binds 127.0.0.1
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def project_worker(project_backend: Backend, tmp_path_factory) -> Iterator[WorkerProcess]:  # noqa: ANN001
    log = Path(tmp_path_factory.mktemp("project-worker")) / "worker.log"
    process = WorkerProcess(project_backend.settings, log, extra_env=WORKER_ENV).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def project_server(
    project_backend: Backend, project_worker, tmp_path_factory
) -> Iterator[ServerProcess]:  # noqa: ANN001
    log = Path(tmp_path_factory.mktemp("project-server")) / "api.log"
    process = api_server(project_backend.settings, log).start()
    yield process
    process.stop()


async def run_each_graph(url: str) -> dict[str, tuple[str, dict]]:
    """One run of each declared graph through the SDK: its status and its thread's values."""
    client = get_client(url=url)
    outcomes = {}
    for graph in DECLARED:
        thread = await client.threads.create()
        thread_id = thread["thread_id"]
        config = {"configurable": {"style": "bold"}} if graph == "styled" else None
        run = await client.runs.create(thread_id, graph, input={"name": "Ada"}, config=config)
        await client.runs.join(thread_id, run["run_id"])
        finished = await client.runs.get(thread_id, run["run_id"])
        state = await client.threads.get_state(thread_id)
        reply = state["values"]["reply"].replace(thread_id, "THREAD")
        outcomes[graph] = (finished["status"], reply)
    return outcomes


def test_a_project_runs_through_the_sdk_with_its_env_factories_and_async_nodes(project_server):
    outcomes = asyncio.run(run_each_graph(project_server.url))
    assert outcomes == {
        # A graph file importing its package from the `./src` dependency; GREETING and
        # PUNCTUATION from project.env; SHADOWED from the worker's own environment.
        "greeter": ("success", "Hello, Ada! (from-the-worker)"),
        "shouter": ("success", "ADA"),  # a module's StateGraph
        "counter": ("success", "3"),  # a factory without an argument
        "replier": ("success", "Ada, awaited on thread THREAD"),  # an async node
        "styled": ("success", "bold: Ada"),  # an async factory given the run's config
    }


def test_the_api_lists_and_the_worker_serves_exactly_the_declared_graphs(
    project_backend, project_worker, project_server
):
    async def listed() -> list[dict]:
        return await get_client(url=project_server.url).assistants.search(limit=100)

    assistants = asyncio.run(listed())
    assert sorted(a["graph_id"] for a in assistants) == DECLARED
    # each graph's default assistant, its id derived as the reference derives it
    assert all(a["assistant_id"] == default_assistant_id(a["graph_id"]) for a in assistants)
    described = {a["graph_id"]: a.get("description") for a in assistants}
    assert described["counter"] == "Counts the letters of a name."
    # The queues the worker consumes: one per declared graph (<queue>.<deployment>.<graph>).
    line = re.search(r"consuming the queues of 5 assistants: (.*)", project_worker.log())
    assert line, project_worker.log()
    queues = line.group(1).strip().split(", ")
    assert sorted(q.rsplit(".", 1)[1] for q in queues) == DECLARED
    assert all(q.startswith(project_backend.settings.queue + ".") for q in queues)
    # And the worker's own record in the fleet, read by another `--config` process.
    done = subprocess.run(
        [sys.executable, "-m", "runqueue", "workers", "--json"],
        env=settings_env(project_backend.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (member,) = json.loads(done.stdout)
    assert sorted(member["assistants"]) == DECLARED


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_bad_project_stops_the_command_in_one_line(tmp_path, command):
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"agent": "./agent.py:graph"}}))
    done = subprocess.run(
        [sys.executable, "-m", "runqueue", "--config", str(config), command],
        env=settings_env(make_settings(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {config}: graphs.agent: no such file {tmp_path / 'agent.py'}"
    ]


def make_settings(tmp_path: Path):  # noqa: ANN201
    from runqueue import Settings

    return Settings(data_dir=tmp_path / "data", api_auth="off")

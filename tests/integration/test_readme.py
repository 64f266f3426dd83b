"""The README's commands and example, run exactly as a newcomer would run them.

The demo command runs in a fresh virtual environment built from a clean copy of the repo
(the files git tracks or would track; no .venv, no .git, no build artefacts). pip installs
from PyPI through its normal cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select

from runqueue import Settings
from runqueue.cli.processes import stop_process_group
from runqueue.store.models import Run
from tests.support import REPO_ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
GUARANTEES = ("reject", "interrupt", "rollback", "enqueue", "cancel", "stream", "graph")


def block_after(marker: str, language: str) -> str:
    """The fenced code block that follows an HTML comment marker in the README."""
    text = README.read_text()
    match = re.search(
        rf"<!-- {re.escape(marker)} -->\s*```{language}\n(.*?)\n```", text, flags=re.S
    )
    assert match, f"README has no ```{language} block after <!-- {marker} -->"
    return match.group(1)


def clean_copy(destination: Path) -> Path:
    """The repository's own files, as a fresh clone would have them."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = [
            str(path.relative_to(REPO_ROOT))
            for path in REPO_ROOT.rglob("*")
            if path.is_file()
            and not {".git", ".venv", "__pycache__"} & set(path.relative_to(REPO_ROOT).parts)
        ]
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: no runqueue settings, no active virtualenv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUNQUEUE_", "PYTEST_"))
        and key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    if "VIRTUAL_ENV" in os.environ:  # drop the test venv's bin from PATH
        venv_bin = str(Path(os.environ["VIRTUAL_ENV"]) / "bin")
        env["PATH"] = os.pathsep.join(
            part for part in env.get("PATH", "").split(os.pathsep) if part != venv_bin
        )
    env.update(extra)
    return env


def test_readme_test_command_is_the_ci_command():
    ci_lines = [
        line
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert block_after("test-command", "sh") == ci_lines[-1]


@pytest.mark.timeout(900)
def test_readme_demo_command_in_a_fresh_virtualenv(tmp_path):
    command = block_after("demo-command", "sh")
    assert "runqueue demo" in command and "\n" not in command
    checkout = clean_copy(tmp_path / "runqueue")
    assert not (checkout / ".venv").exists() and not (checkout / ".git").exists()

    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=clean_env(HOME=os.environ.get("HOME", str(tmp_path))),
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for guarantee in GUARANTEES:
        assert re.search(rf"^PASS {guarantee}: ", result.stdout, re.M), result.stdout[-4000:]
    assert re.search(r"^PASS all: 7 of 7 guarantees held in ([\d.]+)s", result.stdout, re.M)
    assert not re.search(r"^FAIL ", result.stdout, re.M)
    assert "Traceback" not in output
    # The demo itself (not pip) finishes in under 30 s.
    demo_seconds = float(re.search(r"guarantees held in ([\d.]+)s", result.stdout).group(1))
    assert demo_seconds < 30, f"demo took {demo_seconds}s"
    print(f"README demo command: {time.monotonic() - started:.0f}s, demo {demo_seconds:.1f}s")


def run_readme_example(tmp_path: Path, block: str) -> subprocess.CompletedProcess[str]:
    """Save the README's example `block` (e.g. "chat.py") as that file, then, as the README
    says: `runqueue migrate`, a worker of the file's `app`, and `python <file>`."""
    source = block_after(f"example: {block}", "python")
    (tmp_path / block).write_text(source)
    if block == "graph_app.py":  # "Save this as graph_app.py beside graph.py"
        (tmp_path / "graph.py").write_text(block_after("example: graph.py", "python"))
    module = block.removesuffix(".py")
    settings = Settings(data_dir=tmp_path / "data", queue=f"readme-{module}-{tmp_path.name}")
    env = clean_env(
        RUNQUEUE_DATA_DIR=str(settings.data_dir),
        RUNQUEUE_QUEUE=settings.queue,
        PYTHONPATH=str(REPO_ROOT),
    )
    migrated = subprocess.run(
        [sys.executable, "-m", "runqueue", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        concurrency=1,
        extra_env={
            "RUNQUEUE_APP": f"{module}:app",
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}",
        },
    )
    worker.start()
    try:
        result = subprocess.run(
            [sys.executable, block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        worker.stop()
    assert result.returncode == 0, result.stderr
    return result


def test_readme_python_example_runs(tmp_path):
    """The README's chat.py, with the worker and commands the README gives."""
    assert len(block_after("example: chat.py", "python").splitlines()) <= 30
    result = run_readme_example(tmp_path, "chat.py")
    assert result.stdout.splitlines() == [
        "success {'reply': \"you said 'hello'\", 'turn': 1}",
        "success {'reply': \"you said 'again'\", 'turn': 2}",
    ]


def test_readme_graph_example_runs(tmp_path):
    """The README's graph_app.py: a compiled graph registered in a few lines, run by a
    worker of that app, streamed and read back with state()."""
    lines = run_readme_example(tmp_path, "graph_app.py").stdout.splitlines()
    assert lines[0].startswith("metadata {'run_id': ")
    assert lines[1:] == [
        "updates {'write': {'note': 'notes on queues'}}",
        "end {'status': 'success'}",
        "{'topic': 'queues', 'note': 'notes on queues'}",
    ]


def readme_commands(marker: str) -> list[tuple[dict[str, str], list[str], bool]]:
    """A ```sh block's commands: (variables set before it, argv, run in the background)."""
    commands = []
    for line in block_after(marker, "sh").splitlines():
        words = shlex.split(line.split("#")[0])
        background = bool(words) and words[-1] == "&"
        words = words[:-1] if background else words
        assigned = dict(word.split("=", 1) for word in words if "=" in word.split("-")[0])
        argv = words[len(assigned) :]
        if argv:
            assert argv[0] == "runqueue", line
            commands.append((assigned, [sys.executable, "-m", *argv], background))
    return commands


def test_readme_project_and_http_api_example_run(tmp_path):
    """The README's LangGraph project (graph.py and langgraph.json, no app module) with its
    commands as written: migrate, a `--config` worker, `assistants`; then its `serve
    --config` command (keys off, on loopback) and api_client.py through it, on the embedded
    default. The folder is not on PYTHONPATH: the project's `dependencies` find graph.py."""
    from tests.api_support import ServerProcess, free_port

    for block in ("graph.py", "api_client.py"):
        (tmp_path / block).write_text(block_after(f"example: {block}", "python"))
    (tmp_path / "langgraph.json").write_text(block_after("example: langgraph.json", "json"))
    assert len(block_after("example: api_client.py", "python").splitlines()) <= 20
    env = clean_env(
        RUNQUEUE_DATA_DIR=str(tmp_path / "data"),
        RUNQUEUE_QUEUE=f"readme-api-{tmp_path.name}",
        PYTHONPATH=str(REPO_ROOT),
    )
    port = free_port()
    ((serve_env, serve, _),) = readme_commands("serve-command")
    server = ServerProcess(
        [*serve, "--port", str(port)], env | serve_env, tmp_path / "api.log", port, tmp_path
    )
    worker, listed, log = None, "", tmp_path / "worker.log"
    try:
        for assigned, argv, background in readme_commands("project-commands"):
            if background:  # the worker: started as a shell's `&` would, stopped by pid
                with log.open("wb") as output:
                    worker = subprocess.Popen(
                        argv, cwd=tmp_path, env=env | assigned, stdout=output,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                wait_until(lambda: " ready." in log.read_text(), 60, message="project worker")
                continue
            done = subprocess.run(
                argv, cwd=tmp_path, env=env | assigned, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            listed = done.stdout
        server.start()
        client = (tmp_path / "api_client.py").read_text().replace("8123", str(port))
        (tmp_path / "api_client.py").write_text(client)
        result = subprocess.run(
            [sys.executable, "api_client.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
        if worker is not None:
            stop_process_group(worker, 30)
    assert worker is not None and "writer" in listed
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("metadata {'run_id': ")
    assert lines[1:] == [
        "updates {'write': {'note': 'notes on http'}}",
        "end {'status': 'success'}",
    ]


def test_readme_use_it_then_graphs_in_one_folder_leaves_no_run_waiting(tmp_path):
    """The README's steps in order, in one folder and one data directory: "Use it" starts a
    worker of chat.py and keeps it; "LangGraph graphs" starts a worker of graph_app.py beside
    it, on the same default queue setting. Each run goes to the worker that serves its
    assistant: the chat worker never receives the graph run (no "unregistered task"), and no
    run waits for the relay (the relay publishes again only after 30 s; each run here was
    published once). Each script runs again once both workers are up: with one shared queue,
    a run went to either worker, so eight runs would all have found theirs 1 time in 64."""
    for block in ("chat.py", "graph.py", "graph_app.py"):
        (tmp_path / block).write_text(block_after(f"example: {block}", "python"))
    data_dir = tmp_path / "data"
    env = clean_env(
        RUNQUEUE_DATA_DIR=str(data_dir), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO_ROOT}"
    )

    def runqueue(*args: str, log: Path | None = None) -> subprocess.Popen | str:
        command = [sys.executable, "-m", "runqueue", *args]
        if log is None:
            done = subprocess.run(
                command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
            return done.stdout
        with log.open("wb") as output:
            return subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def python(script: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    logs = {app: tmp_path / f"{app}.log" for app in ("chat", "graph_app")}
    workers = []
    try:
        runqueue("migrate")
        workers.append(runqueue("--app", "chat:app", "worker", log=logs["chat"]))
        wait_until(lambda: " ready." in logs["chat"].read_text(), 60, message="chat worker")
        chat_lines = python("chat.py")
        workers.append(runqueue("--app", "graph_app:app", "worker", log=logs["graph_app"]))
        wait_until(lambda: " ready." in logs["graph_app"].read_text(), 60, message="graph worker")
        graph_lines = [python("graph_app.py") for _ in range(4)]
        chat_again = python("chat.py")
        listed = json.loads(runqueue("runs", "--json"))
    finally:
        for process in workers:  # stopped as a terminal's Ctrl-C would, then by force
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    assert chat_lines[0].startswith("success {'reply': \"you said 'hello'\", 'turn': 1}")
    for lines in graph_lines:
        assert lines[-1] == "{'topic': 'queues', 'note': 'notes on queues'}"
    assert [line.split()[0] for line in chat_again] == ["success", "success"]
    assert "unregistered task" not in logs["chat"].read_text() + logs["graph_app"].read_text()
    assert sorted(run["assistant_id"] for run in listed) == ["chat"] * 4 + ["writer"] * 4
    assert all(run["status"] == "success" for run in listed)
    engine = sqlalchemy.create_engine(Settings(data_dir=data_dir).database_url)
    try:
        with engine.connect() as conn:
            published_again = conn.execute(select(Run.publish_count)).scalars().all()
    finally:
        engine.dispose()
    assert published_again == [0] * 8  # none was left to the relay

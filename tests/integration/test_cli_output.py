"""What the `runqueue` command prints where a new user first looks (issue 25, item 6): the
api key alone on stdout, an unknown assistant's hint at --app, an empty fleet in one line,
a cancel with nothing to cancel, counts in the singular, a graph's own description, tables
that fit a 70-column terminal, and a database check without alembic's INFO lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support import Backend, make_backend, settings_env
from tests.support import run_cli as runqueue
from workers.assistants import RESEARCH

pytestmark = pytest.mark.integration

NARROW = "70"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """An embedded backend, migrated, with no worker: the runs stay pending unless cancelled."""
    backend = make_backend("embedded", tmp_path_factory.mktemp("cli-output"))
    backend.migrate()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def env(backend: Backend) -> dict[str, str]:
    return {k: v for k, v in settings_env(backend.settings).items() if k != "COLUMNS"}


def submit(env: dict[str, str], thread_id: str, assistant: str = "echo") -> str:
    done = runqueue(env, "submit", assistant, "--thread", thread_id, "--strategy", "enqueue")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_api_key_create_prints_the_key_alone_on_stdout(env):
    created = runqueue(env, "api-key", "create", "alice")
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"\S{20,}\n", created.stdout), created.stdout  # KEY=$(...) is the key
    assert re.fullmatch(r"created key \S+ for user alice; it is shown only now\n", created.stderr)


def test_an_unknown_assistant_says_how_the_app_is_chosen(env):
    done = runqueue(env, "submit", "chat", "--thread", "t-unknown")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: unknown assistant 'chat' (registered: echo"), line
    assert line.endswith(
        "; the assistants come from --app or RUNQUEUE_APP, or --config or RUNQUEUE_CONFIG "
        "(now the app workers.app:app)"
    )


def test_workers_with_none_live_is_one_line(env):
    done = runqueue(env, "workers")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "no live workers (start one with: runqueue worker)\n"
    assert json.loads(runqueue(env, "workers", "--json").stdout) == []


def test_cancelling_an_ended_run_says_there_is_nothing_to_cancel(env):
    """Not an error (exit 0): the run is not executing, which is what a cancel asks for."""
    run_id = submit(env, f"t-cancel-{uuid.uuid4().hex[:8]}")
    first = runqueue(env, "cancel", run_id)
    assert first.stdout == f"run {run_id} interrupted before it started (interrupt)\n"
    again = runqueue(env, "cancel", run_id)
    assert (again.returncode, again.stderr) == (0, ""), again
    assert again.stdout == f"run {run_id} already ended (interrupted): nothing to cancel\n"


def test_one_run_is_one_run(env):
    thread_id = f"t-one-{uuid.uuid4().hex[:8]}"
    submit(env, thread_id)
    title = runqueue(env, "runs", "--thread", thread_id).stdout.splitlines()[0]
    assert title.strip() == "1 run"


def test_a_graph_assistant_shows_its_own_description(env):
    listed = {e["name"]: e for e in json.loads(runqueue(env, "assistants", "--json").stdout)}
    assert listed["research"]["kind"] == "graph"
    assert listed["research"]["description"] == RESEARCH
    assert "The body of every graph" not in runqueue(env, "assistants").stdout


def test_tables_fit_a_70_column_terminal_without_splitting_ids(env):
    suffix = uuid.uuid4().hex[:8]
    threads = [f"narrow-{suffix}-{n}" for n in range(3)]
    for thread_id in threads:
        submit(env, thread_id, "steps")
    narrow = env | {"COLUMNS": NARROW}

    runs = runqueue(narrow, "runs", "--limit", "3")
    assert runs.returncode == 0, runs.stderr
    lines = runs.stdout.splitlines()
    assert all(len(line) <= int(NARROW) for line in lines), runs.stdout
    rows = [line for line in lines if "narrow-" in line]
    assert [re.search(r"narrow-\S+", row).group() for row in rows] == threads[::-1]  # whole
    assert all(re.search(r"\b[0-9a-f]{8}-[0-9a-f-]*\b.*\bpending\b", row) for row in rows)
    # The footer wraps between words, never inside one.
    note = "run ids cut to unique prefixes (show and cancel take them); --json prints them whole"
    assert note in " ".join(runs.stdout.split())

    listed = runqueue(narrow, "threads", "--limit", "3")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= int(NARROW) for line in lines), listed.stdout
    rows = [line for line in lines if "narrow-" in line]
    assert [re.search(r"narrow-\S+", row).group() for row in rows] == threads[::-1]
    assert "…" not in listed.stdout, listed.stdout  # no time (or id) cut short
    assert all(re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b", row) for row in rows), rows
    assert all("1 pending" in row for row in rows), rows


def test_a_database_check_logs_no_alembic_info(backend):
    """A worker's start checks the schema: alembic's seven INFO lines are not shown."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from runqueue.settings import Settings\n"
        "from runqueue.store.database import migrate, require_current_schema\n"
        "settings = Settings.from_env()\n"
        "require_current_schema(settings); migrate(settings)\n"
        "logging.getLogger('alembic').warning('still shown')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=settings_env(backend.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    alembic = [line for line in done.stderr.splitlines() if "alembic" in line]
    assert alembic == ["WARNING:alembic:still shown"], done.stderr


def test_workers_fit_a_narrow_terminal_without_splitting_a_node_name(tmp_path):
    """Node names carry the pid (runqueue-PID@HOST): in 70 columns the host and pid columns
    go first, and a name is never folded over lines."""
    backend = make_backend("embedded", tmp_path)
    try:
        store = backend.manager().store
        names = [f"runqueue-{pid}@build-host-{pid % 10}" for pid in (41234, 41235)]
        for pid, name in zip((41234, 41235), names, strict=True):
            store.register_worker(
                name, pool="prefork", concurrency=4, assistants=["chat", "writer"],
                host=name.split("@")[1], pid=pid,
            )  # fmt: skip
        env = settings_env(backend.settings) | {"COLUMNS": NARROW}
        done = runqueue(env, "workers")
    finally:
        backend.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= int(NARROW) for line in lines), done.stdout
    assert all(any(name in line for line in lines) for name in names), done.stdout
    assert "2 live workers" in done.stdout


def test_a_full_page_of_runs_says_it_is_a_page(env):
    """`runs --limit N` that comes back with N runs says more may exist; a short page not."""
    thread_id = f"t-page-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        submit(env, thread_id)
    full = runqueue(env, "runs", "--thread", thread_id, "--limit", "2")
    short = runqueue(env, "runs", "--thread", thread_id, "--limit", "5")
    assert "the latest 2 runs; --limit shows more" in " ".join(full.stdout.split())
    assert "--limit shows more" not in short.stdout

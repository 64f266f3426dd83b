"""The `runqueue` command, run as a subprocess against the real services, on both backends.

The `worker` fixture is itself `runqueue worker`; every other command is exercised here,
including the error paths, which must be one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from runqueue import AbortAction, RunStatus
from tests.support import run_cli as runqueue
from tests.support import settings_env, wait_until

pytestmark = pytest.mark.integration

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/runqueue"
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    """Non-zero exit, exactly one line on stderr naming the problem, no traceback anywhere."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert re.search(expected, lines[0]), lines[0]


def thread() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def env(backend) -> dict[str, str]:
    """The backend's settings; no COLUMNS, so that piped tables show whole run ids."""
    return {k: v for k, v in settings_env(backend.settings).items() if k != "COLUMNS"}


def test_migrate_is_idempotent(env):
    result = runqueue(env, "migrate")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"the schema at \S+ is already at revision \w+; nothing to do\n", result.stdout
    ), result.stdout


def test_migrate_says_what_it_did(tmp_path):
    """Created (and the revision), upgraded from R1 to R2, or already at R: three messages."""
    from alembic.script import ScriptDirectory

    from runqueue import Settings
    from runqueue.store.database import alembic_config, migrate

    settings = Settings(data_dir=tmp_path / "data")
    env = settings_env(settings)
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    database = tmp_path / "data" / "runqueue.sqlite3"

    created = runqueue(env, "migrate")
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"created the schema at sqlite:///{database}: revision {head}\n"

    older = Settings(data_dir=tmp_path / "older")
    migrate(older, "0003")  # a database an older runqueue made
    upgraded = runqueue(settings_env(older), "migrate")
    assert upgraded.stdout == (
        f"upgraded the schema at sqlite:///{older.data_dir / 'runqueue.sqlite3'} "
        f"from revision 0003 to {head}\n"
    )
    again = runqueue(env, "migrate")
    assert again.stdout == (
        f"the schema at sqlite:///{database} is already at revision {head}; nothing to do\n"
    )


def test_submit_wait_then_show_runs_and_threads(env, worker, manager):
    thread_id = thread()
    result = runqueue(
        env, "submit", "echo", "--thread", thread_id, "--kwargs", '{"x": 1}', "--wait"
    )
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] == "success"
    assert submitted["result"] == {"echo": {"x": 1}, "turn": 1}
    run_id = submitted["run_id"]
    assert manager.get(run_id).status is RunStatus.success

    shown = runqueue(env, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert run_id in shown.stdout and thread_id in shown.stdout
    history = [line for line in shown.stdout.splitlines() if re.search(r"\d{4}-\d\d-\d\dT", line)]
    statuses = [s for line in history for s in ("pending", "running", "success") if s in line]
    assert statuses[-3:] == ["pending", "running", "success"], shown.stdout

    listed = runqueue(env, "runs", "--thread", thread_id)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "success" in listed.stdout
    assert run_id not in runqueue(env, "runs", "--status", "error").stdout
    assert run_id in runqueue(env, "runs", "--status", "success").stdout

    threads = runqueue(env, "threads")
    assert threads.returncode == 0, threads.stderr
    row = next(line for line in threads.stdout.splitlines() if thread_id in line)
    assert re.search(r"\b1\b", row), row  # one success run


def test_submit_without_wait_returns_pending(env, worker, manager):
    result = runqueue(env, "submit", "noop", "--thread", thread(), "--strategy", "enqueue")
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] in ("pending", "running", "success")
    assert manager.join(submitted["run_id"], timeout=30).status is RunStatus.success


def test_submit_wait_reports_failure_with_nonzero_exit(env, worker):
    result = runqueue(env, "submit", "fail", "--thread", thread(), "--wait")
    assert result.returncode == 3  # ended, not in success (2 is a usage error)
    assert json.loads(result.stdout)["status"] == "error"


def test_submit_wait_that_times_out_prints_the_run_and_exits_4(env, worker, manager):
    result = runqueue(
        env, "submit", "steps", "--thread", thread(), "--kwargs", '{"steps": 20, "delay": 0.2}',
        "--wait", "--timeout", "0.5",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] in ("pending", "running")
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: run {submitted['run_id']} still ") and "after 0.5s" in line
    assert manager.join(submitted["run_id"], timeout=30).status is RunStatus.success


def test_submit_with_no_worker_serving_notes_it_once_after_the_run(env, worker):
    """The registry's warning is a `note:` line after success, never a log line on top of
    an error."""
    thread_id = thread()
    first = runqueue(env, "submit", "noop", "--thread", thread_id)
    assert first.returncode == 0, first.stderr
    refused = runqueue(env, "submit", "noop", "--thread", thread_id)
    assert refused.returncode in (0, 1)
    if refused.returncode == 1:  # the first still in flight: rejected, one line only
        assert len(refused.stderr.strip().splitlines()) == 1
    assert "WARNING" not in first.stderr + refused.stderr


def test_cancel_running_run_with_rollback(env, worker, manager, journal, run_factory):
    run = run_factory(thread(), steps=200, delay=0.05)
    wait_until(lambda: journal.count(event="step") > 0)

    result = runqueue(env, "cancel", run.run_id, "--action", "rollback")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cancel of run {run.run_id} recorded (rollback); its worker stops it\n"
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.interrupted
    assert done.abort_action is AbortAction.rollback
    assert manager.checkpoints(run.thread_id) == []
    assert journal.count(event="step") < 200

    again = runqueue(env, "cancel", run.run_id)  # nothing to do is not a failure: exit 0
    assert (again.returncode, again.stderr) == (0, ""), again
    assert again.stdout == f"run {run.run_id} already ended (interrupted): nothing to cancel\n"


def test_demo_on_this_backend(backend, tmp_path):
    """`runqueue demo` with the global options: the same guarantees on each backend."""
    settings = backend.settings
    args = ["--data-dir", str(tmp_path / "demo")]
    if backend.name == "postgres_redis":
        args += ["--database-url", settings.database_url, "--broker-url", settings.broker_url]
    env = {k: v for k, v in settings_env(settings).items() if not k.startswith("RUNQUEUE_")}
    started = time.monotonic()
    result = runqueue(env, *args, "demo")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    for guarantee in (
        "reject",
        "interrupt",
        "rollback",
        "enqueue",
        "cancel",
        "stream",
        "graph",
        "all",
    ):
        assert re.search(rf"^PASS {guarantee}: ", result.stdout, re.M), result.stdout
    assert "FAIL" not in result.stdout
    assert elapsed < 30, f"the demo took {elapsed:.1f}s"


def test_demo_passes_three_times_in_one_data_dir(backend, tmp_path):
    """A used data dir keeps earlier demos' journals and runs: each demo judges only its
    own, so the second and third pass as the first did (issue 25, item 1)."""
    settings = backend.settings
    args = ["--data-dir", str(tmp_path / "demo")]
    if backend.name == "postgres_redis":
        args += ["--database-url", settings.database_url, "--broker-url", settings.broker_url]
    env = {k: v for k, v in settings_env(settings).items() if not k.startswith("RUNQUEUE_")}
    for attempt in (1, 2, 3):
        result = runqueue(env, *args, "demo")
        assert result.returncode == 0, f"demo {attempt}:\n{result.stdout}{result.stderr}"
        assert re.search(r"^PASS all: ", result.stdout, re.M), result.stdout
        assert "FAIL" not in result.stdout, f"demo {attempt}:\n{result.stdout}"


# -- error paths ------------------------------------------------------------------------


def test_unknown_run_is_one_line(env):
    missing = str(uuid.uuid4())
    assert_one_line_error(runqueue(env, "show", missing), f"^error: no run {missing}$")
    assert_one_line_error(runqueue(env, "cancel", missing), f"^error: no run {missing}$")


def test_bad_run_id_is_one_line(env):
    assert_one_line_error(runqueue(env, "show", "not-a-run"), "invalid run id")
    assert_one_line_error(runqueue(env, "cancel", "../etc"), "invalid run id")


def test_bad_strategy_is_one_line_and_writes_nothing(env, manager):
    thread_id = thread()
    result = runqueue(env, "submit", "echo", "--thread", thread_id, "--strategy", "sideways")
    assert_one_line_error(result, "unsupported multitask strategy 'sideways'")
    assert manager.list_by_thread(thread_id) == []


def test_bad_status_and_unknown_assistant_are_one_line(env):
    assert_one_line_error(runqueue(env, "runs", "--status", "done"), "unknown run status 'done'")
    result = runqueue(env, "submit", "nobody", "--thread", thread())
    assert_one_line_error(result, "unknown assistant 'nobody'")


def test_unreachable_broker_fails_the_demo(env):
    """The demo needs the broker (submit does not: tests/integration/test_cli_errors.py)."""
    demo = runqueue(env, "--broker-url", UNREACHABLE_BROKER, "demo")
    assert_one_line_error(demo, "broker unavailable")


# -- JSON, ids, kwargs, assistants ----------------------------------------------------------


def test_json_of_runs_show_and_threads(env, worker, manager):
    thread_id = thread()
    submitted = json.loads(
        runqueue(
            env, "submit", "echo", "--thread", thread_id, "--kwargs", '{"x": 2}', "--wait"
        ).stdout
    )
    run_id = submitted["run_id"]

    listed = json.loads(runqueue(env, "runs", "--thread", thread_id, "--json").stdout)
    assert [run["run_id"] for run in listed] == [run_id]
    run = listed[0]
    assert run["status"] == "success" and run["multitask_strategy"] == "reject"
    assert run["kwargs"] == {"x": 2} and run["result"] == {"echo": {"x": 2}, "turn": 1}
    for field in ("created_at", "started_at", "ended_at"):
        assert datetime.fromisoformat(run[field]).tzinfo is not None, field
    every = json.loads(runqueue(env, "runs", "--limit", "100000", "--json").stdout)  # not a page
    assert json.loads(
        runqueue(env, "runs", "--status", "error", "--limit", "100000", "--json").stdout
    ) == [r for r in every if r["status"] == "error"]

    shown = json.loads(runqueue(env, "show", run_id, "--json").stdout)
    assert {k: v for k, v in shown.items() if k not in ("events", "pending_reason", "cron")} == run
    assert shown["cron"] is None  # no cron fired it (tests/integration/test_crons.py: one did)
    assert [event["status"] for event in shown["events"]][-3:] == ["pending", "running", "success"]
    assert shown["pending_reason"] is None
    assert all(datetime.fromisoformat(event["at"]) for event in shown["events"])

    threads = json.loads(runqueue(env, "threads", "--json").stdout)
    mine = next(t for t in threads if t["thread_id"] == thread_id)
    assert mine["runs"] == {
        "pending": 0, "running": 0, "success": 1, "error": 0, "timeout": 0, "interrupted": 0
    }  # fmt: skip
    assert datetime.fromisoformat(mine["updated_at"]).tzinfo is not None


def test_runs_at_80_columns_shows_unique_prefixes_that_show_and_cancel_take(
    env, worker, manager, run_factory
):
    thread_id = f"a-thread-with-a-long-name-{uuid.uuid4().hex}"
    # Long enough to be running still at the cancel, five CLI processes later on a busy
    # machine; the cancel ends it.
    running = run_factory(thread_id, steps=2000, delay=0.05)
    held = run_factory(thread_id, strategy="enqueue", steps=1, delay=0)

    table = runqueue(env | {"COLUMNS": "80"}, "runs", "--thread", thread_id)

    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    assert running.run_id not in table.stdout  # 36 characters do not fit with the rest
    shown_ids = re.findall(rf"\b({re.escape(running.run_id[:8])}[0-9a-f-]*)", table.stdout)
    prefixes = {
        run.run_id: next(prefix for prefix in shown_ids if run.run_id.startswith(prefix))
        for run in (running, held)
    }
    assert len(shown_ids) == 2 and all(len(prefix) < 36 for prefix in shown_ids), table.stdout
    assert "unique prefixes" in table.stdout
    wide = runqueue(env | {"COLUMNS": "200"}, "runs", "--thread", thread_id)
    assert running.run_id in wide.stdout and held.run_id in wide.stdout  # whole when they fit

    shown = runqueue(env, "show", prefixes[held.run_id], "--json")
    assert json.loads(shown.stdout)["run_id"] == held.run_id
    reason = json.loads(shown.stdout)["pending_reason"]  # the registry's why_pending()
    assert reason.startswith(f"held behind run {running.run_id}"), reason
    cancelled = runqueue(env, "cancel", prefixes[running.run_id])
    assert cancelled.stdout == (
        f"cancel of run {running.run_id} recorded (interrupt); its worker stops it\n"
    )
    assert manager.join(running.run_id, timeout=30).status is RunStatus.interrupted
    assert manager.join(held.run_id, timeout=30).status is RunStatus.success


def test_kwargs_from_a_file_and_from_stdin(env, worker, tmp_path):
    (tmp_path / "kwargs.json").write_text('{"from": "file", "n": [1, 2]}')
    from_file = runqueue(
        env,
        "submit",
        "echo",
        "--thread",
        thread(),
        "--kwargs",
        f"@{tmp_path}/kwargs.json",
        "--wait",
    )
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["result"]["echo"] == {"from": "file", "n": [1, 2]}

    from_stdin = runqueue(
        env, "submit", "echo", "--thread", thread(), "--kwargs", "-", "--wait",
        stdin='{"from": "stdin"}',
    )  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["result"]["echo"] == {"from": "stdin"}


def test_assistants_lists_the_registered_ones(env):
    listed = json.loads(runqueue(env, "assistants", "--json").stdout)
    by_name = {entry["name"]: entry for entry in listed}
    assert {"echo", "steps", "noop", "fail", "emitter"} <= set(by_name)
    assert by_name["echo"]["kind"] == "task"
    assert by_name["echo"]["description"].startswith("Returns its kwargs")
    if "research" in by_name:  # the langgraph extra is installed
        assert by_name["research"]["kind"] == "graph"
    table = runqueue(env, "assistants")
    assert table.returncode == 0, table.stderr
    assert re.search(r"\bsteps\b.*\btask\b", table.stdout)


def test_unreachable_database_is_one_line(tmp_path: Path):
    env = settings_env_for(tmp_path, database_url=UNREACHABLE_DATABASE)
    for args in (
        ("runs",),
        ("threads",),
        ("show", str(uuid.uuid4())),
        ("migrate",),
        ("submit", "echo", "--thread", "t1"),
        ("demo",),
    ):
        started = time.monotonic()
        result = runqueue(env, *args)
        assert_one_line_error(result, r"database unavailable \(postgresql\+psycopg://")
        assert time.monotonic() - started < 15, args


def settings_env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    from runqueue import Settings

    return settings_env(Settings(data_dir=tmp_path / "data", **values))

"""The `runqueue` command, run as a subprocess against the real services, on both backends.

The `worker` fixture is itself `runqueue worker`; every other command is exercised here,
including the error paths, which must be one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runqueue import AbortAction, RunStatus
from tests.support import REPO_ROOT, settings_env, wait_until

pytestmark = pytest.mark.integration

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/runqueue"
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def runqueue(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runqueue", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


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
    return settings_env(backend.settings)


def test_migrate_is_idempotent(env):
    result = runqueue(env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


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
    assert result.returncode == 2
    assert json.loads(result.stdout)["status"] == "error"


def test_cancel_running_run_with_rollback(env, worker, manager, journal, run_factory):
    run = run_factory(thread(), steps=200, delay=0.05)
    wait_until(lambda: journal.count(event="step") > 0)

    result = runqueue(env, "cancel", run.run_id, "--action", "rollback")

    assert result.returncode == 0, result.stderr
    assert f"cancelled run {run.run_id} (rollback)" in result.stdout
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.interrupted
    assert done.abort_action is AbortAction.rollback
    assert manager.checkpoints(run.thread_id) == []
    assert journal.count(event="step") < 200

    again = runqueue(env, "cancel", run.run_id)
    assert_one_line_error(again, f"run {run.run_id} is already interrupted")


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


def test_unreachable_broker_fails_submit_before_writing(env, manager):
    thread_id = thread()
    started = time.monotonic()
    result = runqueue(
        env, "--broker-url", UNREACHABLE_BROKER, "submit", "echo", "--thread", thread_id
    )
    assert_one_line_error(result, r"broker unavailable \(redis://127\.0\.0\.1:1/0\)")
    assert time.monotonic() - started < 15
    assert manager.list_by_thread(thread_id) == []
    demo = runqueue(env, "--broker-url", UNREACHABLE_BROKER, "demo")
    assert_one_line_error(demo, "broker unavailable")


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

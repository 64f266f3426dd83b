"""Normal operation logs nothing at ERROR or above: what an operator alerts on is a fault of
the fleet, not a run's outcome.

An assistant that raises is a run's outcome (status `error`, its error recorded and shown by
the API and Flower), not the worker's failure: runqueue logs it at WARNING, with the
traceback its author needs. A cancel terminates the run on its own worker only, so the other
workers do not log that they could not mark it revoked in a result backend runqueue does
not have.
"""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from tests.conftest import require_services
from tests.support import RunFactory, WorkerProcess, make_backend, wait_until

pytestmark = pytest.mark.integration

# A cancelled run checkpoints every STEP seconds; the busy ones checkpoint every few
# milliseconds, so the revoke's SIGTERM lands inside a checkpoint's statement (which it must
# not cut in half: psycopg's connection would be left mid-protocol, and SQLAlchemy logs an
# error resetting it).
STEP = 0.5
BUSY_STEP = 0.002
ERROR_LINE = re.compile(r"^(ERROR|CRITICAL)\b|^\[[^]]*(ERROR|CRITICAL)", re.MULTILINE)


def _steps_seen(journal: Journal, run_id: str, count: int = 1) -> None:
    wait_until(
        lambda: journal.count(run_id=run_id, event="step") >= count,
        timeout=30,
        message=f"steps of run {run_id}",
    )


def test_a_normal_workload_logs_nothing_at_error_level(tmp_path: Path):
    require_services()
    backend = make_backend("postgres_redis", tmp_path, shutdown_grace_seconds=1.0)
    settings = backend.settings
    manager = backend.manager()
    journal = Journal(tmp_path / "journal.jsonl")
    run_factory = RunFactory(manager, journal)
    leaving = WorkerProcess(settings, tmp_path / "leaving.log", concurrency=2, name="leaving")
    staying = WorkerProcess(settings, tmp_path / "staying.log", concurrency=2, name="staying")
    leaving.start()
    staying.start()
    try:
        thread = lambda name: f"{name}-{uuid.uuid4().hex[:6]}"  # noqa: E731
        ended = {}
        # A success, and an assistant that raises.
        ended["success"] = run_factory(thread("ok"), steps=2, delay=0.05)
        ended["error"] = manager.create_or_reject(thread("fail"), "fail")
        # A pending run cancelled, then the running run ahead of it (interrupt).
        busy = run_factory(thread("busy"), steps=60, delay=STEP)
        queued = run_factory(busy.thread_id, steps=1, delay=0.0, strategy="enqueue")
        _steps_seen(journal, busy.run_id)
        assert manager.cancel(queued.run_id) and manager.cancel(busy.run_id)
        ended["cancelled pending"], ended["cancelled running"] = queued, busy
        # A running run cancelled with rollback.
        rolled = run_factory(thread("rolled"), steps=60, delay=STEP)
        _steps_seen(journal, rolled.run_id)
        assert manager.cancel(rolled.run_id, action="rollback")
        ended["cancelled rollback"] = rolled
        # The interrupt and rollback strategies: a new run replaces the running one.
        for strategy in ("interrupt", "rollback"):
            first = run_factory(thread(strategy), steps=60, delay=STEP)
            _steps_seen(journal, first.run_id)
            second = run_factory(first.thread_id, steps=1, delay=0.0, strategy=strategy)
            ended[f"replaced by {strategy}"], ended[f"{strategy} strategy"] = first, second
        # Runs that checkpoint all the time, cancelled.
        for n in range(3):
            busy = run_factory(thread("checkpointing"), steps=5000, delay=BUSY_STEP)
            _steps_seen(journal, busy.run_id, 20)
            assert manager.cancel(busy.run_id)
            ended[f"cancelled while checkpointing {n}"] = busy
        for name, run in list(ended.items()):
            ended[name] = manager.join(run.run_id, timeout=60)
        # A hand-back at shutdown: the leaving worker's long run goes on on the staying one.
        handed = run_factory(thread("handed"), steps=30, delay=0.1)
        _steps_seen(journal, handed.run_id, 2)
        holder, other = (
            (leaving, staying)
            if manager.get(handed.run_id).worker.startswith("leaving-")
            else (staying, leaving)
        )
        holder.kill(signal.SIGTERM)  # the main process only, as `docker stop` does
        assert holder.process.wait(30) == 0
        ended["handed back"] = manager.join(handed.run_id, timeout=60)
        other.kill(signal.SIGTERM)
        assert other.process.wait(30) == 0
    finally:
        leaving.stop()
        staying.stop()
        backend.close()

    statuses = {name: run.status for name, run in ended.items()}
    assert statuses == {
        "success": RunStatus.success,
        "error": RunStatus.error,
        "cancelled pending": RunStatus.interrupted,
        "cancelled running": RunStatus.interrupted,
        "cancelled rollback": RunStatus.interrupted,
        "replaced by interrupt": RunStatus.interrupted,
        "interrupt strategy": RunStatus.success,
        "replaced by rollback": RunStatus.interrupted,
        "rollback strategy": RunStatus.success,
        "handed back": RunStatus.success,
    } | {f"cancelled while checkpointing {n}": RunStatus.interrupted for n in range(3)}
    assert ended["handed back"].attempt == 2 and other.name in ended["handed back"].worker
    logs = leaving.log() + staying.log()
    assert ERROR_LINE.findall(logs) == [], "\n".join(
        line for line in logs.splitlines() if ERROR_LINE.match(line)
    )
    assert "as revoked in backend" not in logs
    # The assistant's exception is still in the log, with its traceback, as a warning.
    error_run = ended["error"].run_id
    warning = re.search(
        rf"^WARNING \S+: run {error_run} \(fail\) failed: RuntimeError.*", logs, re.M
    )
    assert warning is not None
    assert "Traceback (most recent call last)" in logs[warning.end() : warning.end() + 200]

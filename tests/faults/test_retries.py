"""Per-assistant retry policy (on Celery's own retry, recorded in run_events, attempt counter
on the run), re-queueing by the reaper, and soft/hard time limits -> status timeout."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import REDIS_HOST, REDIS_PORT, RunFactory, create_database, drop_database


def _thread() -> str:
    return f"retry-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """One backend on the shared services and one prefork worker for the module."""
    from tests.conftest import require_services

    require_services()
    database_url = create_database(prefix="runqueue_fault")
    tmp = tmp_path_factory.mktemp("retries")
    backend = faultkit.fault_backend(
        tmp,
        database_url,
        f"redis://{REDIS_HOST}:{REDIS_PORT}/{uuid.uuid4().int % 16}",
    )
    (worker,) = faultkit.start_workers(backend.settings, tmp, concurrency=2)
    yield faultkit.manager_for(backend.settings), worker
    worker.stop()
    drop_database(database_url)


def test_retry_policy_retries_then_succeeds(fleet, tmp_path: Path) -> None:
    manager, _ = fleet
    journal = Journal(tmp_path / "journal.jsonl")
    run = RunFactory(manager, journal)(_thread(), assistant="flaky", fail_attempts=1)
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.success and done.result == {"attempt": 2}
    assert done.attempt == 2
    events = manager.events(run.run_id)
    assert [e.status.value for e in events] == [
        "pending",
        "running",
        "pending",
        "running",
        "success",
    ]
    assert events[2].detail.startswith("attempt 1/3 failed, retry in 0.5s: RuntimeError")
    # The backoff was honoured: the second attempt began >= 0.5 s after the first ended.
    attempts = journal.lines(event="start")
    ends = journal.lines(event="end")
    assert [line["attempt"] for line in attempts] == [1, 2]
    assert attempts[1]["time"] - ends[0]["time"] >= 0.45


def test_retry_policy_gives_up_after_max_attempts(fleet, tmp_path: Path) -> None:
    manager, _ = fleet
    journal = Journal(tmp_path / "journal.jsonl")
    run = RunFactory(manager, journal)(_thread(), assistant="flaky", fail_attempts=10)
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.error and done.error == "RuntimeError: flaky attempt 3"
    assert done.attempt == 3
    statuses = [e.status.value for e in manager.events(run.run_id)]
    assert statuses.count("running") == 3 and statuses[-1] == "error"
    assert journal.starts()[run.run_id] == 3


def test_cancel_between_attempts_stops_the_retries(fleet, tmp_path: Path) -> None:
    manager, _ = fleet
    journal = Journal(tmp_path / "journal.jsonl")
    run = RunFactory(manager, journal)(_thread(), assistant="flaky", fail_attempts=10)
    faultkit.wait_for(
        lambda: (
            [e.status.value for e in manager.events(run.run_id)][-1:] == ["pending"]
            and len(manager.events(run.run_id)) >= 3
        ),
        15,
        "the first retry to wait",
    )
    assert manager.cancel(run.run_id) is True
    time.sleep(1.5)  # longer than the backoff: the retry message arrives and is skipped
    done = manager.get(run.run_id)
    assert done.status is RunStatus.interrupted
    assert journal.starts()[run.run_id] == 1


@pytest.mark.parametrize("assistant", ["soft_limited", "hard_limited"])
def test_time_limits_end_as_timeout(fleet, assistant: str, tmp_path: Path) -> None:
    manager, worker = fleet
    journal = Journal(tmp_path / "journal.jsonl")
    thread_id = _thread()
    run = manager.create_or_reject(
        thread_id, assistant, kwargs={"seconds": 30, "journal": str(journal)}
    )
    following = manager.create_or_reject(
        thread_id, "echo", kwargs={"journal": str(journal)}, multitask_strategy="enqueue"
    )
    done = manager.join(run.run_id, timeout=20)
    assert done.status is RunStatus.timeout, (done.status, done.error)
    assert "TimeLimitExceeded" in done.error
    assert (done.ended_at - done.started_at).total_seconds() < 5
    assert manager.join(following.run_id, timeout=30).status is RunStatus.success
    assert journal.overlapping() == 0
    assert worker.process.poll() is None


def test_reaper_requeues_a_lost_run_when_the_policy_allows(
    shared_backend, workers, report, tmp_path: Path
) -> None:
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    first, second = workers(settings, count=2, concurrency=1)
    run = RunFactory(manager, journal)(_thread(), steps=12, delay=0.25, assistant="steps_retried")
    faultkit.wait_for(lambda: journal.count(event="step") > 0, 30, "a step")
    pid = journal.pid(run.run_id)
    victim = first if pid in first.pool_pids() else second
    killed_at = time.time()
    faultkit.kill_process_tree(victim)
    done = manager.join(run.run_id, timeout=60)
    lines = journal.lines()
    report(
        "sigkill-main-with-retry-policy",
        runs=1,
        lost=int(done.status is not RunStatus.success),
        duplicated=0,
        overlapping=journal.overlapping(),
        attempts=done.attempt,
        done_after_s=done.ended_at.timestamp() - killed_at,
    )
    assert done.status is RunStatus.success and done.attempt == 2
    details = [e.detail or "" for e in manager.events(run.run_id)]
    assert any("lost its worker (lease expired), retry" in d for d in details)
    # Two attempts, one after the other: the second began after the first stopped writing.
    first_attempt = [line for line in lines if line["pid"] == pid]
    second_attempt = [line for line in lines if line["pid"] != pid]
    assert max(x["time"] for x in first_attempt) < min(x["time"] for x in second_attempt)

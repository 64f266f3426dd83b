"""Cancels no worker heard, duplicated messages, and redelivery by the visibility timeout:
the body executes at most once, proven by the assistant's own journal."""

from __future__ import annotations

import time
import uuid

from runqueue import RunStatus
from runqueue.celery.dispatch import publish
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import RunFactory


def _thread() -> str:
    return f"dup-{uuid.uuid4().hex[:10]}"


def test_cancel_while_no_worker_online_never_executes(shared_backend, workers, report, tmp_path):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run = manager.create_or_reject(_thread(), "echo", kwargs={"journal": str(journal)})
    assert manager.cancel(run.run_id) is True  # no worker online: the revoke reaches nobody
    probe = manager.create_or_reject(_thread(), "echo", kwargs={"journal": str(journal)})

    (worker,) = workers(settings, concurrency=1)
    # The probe was queued after the cancelled run's message: once it ran, the worker has
    # received the cancelled run's message too, and skipped it.
    manager.join(probe.run_id, timeout=30)
    faultkit.wait_for(lambda: "not started: finished" in worker.log(), 10, "the skip")
    cancelled = manager.get(run.run_id)
    report(
        "cancel-no-worker",
        runs=1,
        lost=0,
        duplicated=journal.duplicated(),
        overlapping=0,
        executed=journal.starts()[run.run_id],
    )
    assert cancelled.status is RunStatus.interrupted
    assert journal.starts()[run.run_id] == 0
    assert journal.starts()[probe.run_id] == 1


def test_same_message_delivered_twice_executes_once(shared_backend, workers, report, tmp_path):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run = RunFactory(manager, journal)(_thread(), steps=3, delay=0.2)
    # Two more copies of the very same message (same task id): three deliveries in all.
    assert publish(manager.app, manager.runtime, run) and publish(manager.app, manager.runtime, run)
    (worker,) = workers(settings, concurrency=3)
    done = manager.join(run.run_id, timeout=30)
    faultkit.wait_for(
        lambda: worker.log().count(f"run {run.run_id} not started") == 2, 15, "both skips"
    )
    report(
        "duplicate-message",
        runs=1,
        deliveries=3,
        lost=int(done.status is not RunStatus.success),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
    )
    assert done.status is RunStatus.success
    assert journal.starts() == {run.run_id: 1}
    assert done.attempt == 1


def test_visibility_timeout_redelivery_while_running_executes_once(
    shared_database, private_redis, workers, report, tmp_path
):
    """acks_late + a Redis visibility_timeout (1 s) shorter than the run (~5 s): kombu puts
    the unacked message back while the run still executes, a second pool process receives
    it, and the guarded claim skips it."""
    backend = faultkit.fault_backend(
        tmp_path, shared_database, private_redis.url, broker_visibility_timeout=1.0
    )
    settings = backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=2)
    run = RunFactory(manager, journal)(_thread(), steps=8, delay=0.5)
    started = time.monotonic()
    done = manager.join(run.run_id, timeout=60)
    redelivered = worker.log().count(f"run {run.run_id} not started: running")
    report(
        "visibility-timeout-redelivery",
        runs=1,
        redeliveries=redelivered,
        lost=int(done.status is not RunStatus.success),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        run_s=time.monotonic() - started,
    )
    assert redelivered >= 1, "kombu did not redeliver: the scenario did not happen"
    assert done.status is RunStatus.success
    assert journal.starts() == {run.run_id: 1}

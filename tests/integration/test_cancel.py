"""Cancellation and duplicate delivery, on both backends, with real prefork workers."""

from __future__ import annotations

import time
import uuid

from runqueue import RunStatus
from runqueue.celery.dispatch import publish
from tests.support import RunFactory, WorkerProcess, pid_alive, wait_until


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex[:12]}"


def test_cancel_pending_run_never_executes(manager, worker, journal, run_factory):
    thread_id = new_thread()
    blocker = run_factory(thread_id, steps=20, delay=0.05)
    waiting = run_factory(thread_id, steps=1, strategy="enqueue")
    assert manager.cancel(waiting.run_id) is True
    assert manager.get(waiting.run_id).status is RunStatus.interrupted

    assert manager.join(blocker.run_id, timeout=30).status is RunStatus.success
    time.sleep(1.0)  # time enough for a wrongly released run to start
    assert journal.lines(run_id=waiting.run_id) == []
    assert manager.get(waiting.run_id).status is RunStatus.interrupted
    assert not manager.has_inflight(thread_id)


def test_cancel_running_run_stops_its_side_effects(manager, worker, journal, run_factory):
    run = run_factory(new_thread(), steps=400, delay=0.05)
    wait_until(lambda: journal.count(run_id=run.run_id, event="step") >= 3, message="stepping")
    pid = journal.pid(run.run_id)

    assert manager.cancel(run.run_id) is True
    wait_until(lambda: not pid_alive(pid), timeout=5, interval=0.01, message="process death")
    assert manager.join(run.run_id, timeout=10).status is RunStatus.interrupted

    steps_at_stop = journal.count(run_id=run.run_id, event="step")
    time.sleep(0.5)
    assert journal.count(run_id=run.run_id, event="step") == steps_at_stop < 400
    # The assistant's finally block ran: SIGTERM unwinds, it does not kill outright.
    assert journal.lines(run_id=run.run_id)[-1]["event"] == "end"
    assert [e.status for e in manager.events(run.run_id)][-1] is RunStatus.interrupted


def test_cancel_finished_run_returns_false(manager, worker):
    run = manager.create_or_reject(new_thread(), "echo")
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    assert manager.cancel(run.run_id) is False
    assert manager.get(run.run_id).status is RunStatus.success


def test_revoke_while_no_worker_listens_is_honoured_later(backend, tmp_path, journal):
    """The cancel intent lives in the database, so a lost broadcast cannot resurrect a run."""
    queue = f"offline-{uuid.uuid4().hex[:8]}"
    manager = backend.manager(queue=queue)
    run = RunFactory(manager, journal)(new_thread(), steps=1)
    assert manager.cancel(run.run_id) is True  # the revoke broadcast reaches no one

    late = WorkerProcess(backend.settings.with_overrides(queue=queue), tmp_path / "late.log")
    late.start()
    try:
        wait_until(
            lambda: "not started: finished" in late.log(),
            timeout=30,
            message="the late worker to receive and skip the run",
        )
    finally:
        late.stop()
    assert journal.lines(run_id=run.run_id) == []
    assert manager.get(run.run_id).status is RunStatus.interrupted


def test_duplicated_message_executes_the_body_once(manager, worker, journal, run_factory):
    run = run_factory(new_thread(), steps=3, delay=0.05)
    assert publish(manager.app, manager.runtime, run) and publish(
        manager.app, manager.runtime, run
    )  # two more copies
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    publish(manager.app, manager.runtime, run)  # and one after it finished
    time.sleep(1.0)
    assert journal.count(run_id=run.run_id, event="start") == 1
    assert journal.count(run_id=run.run_id, event="step") == 3
    assert [e.status for e in manager.events(run.run_id)] == [
        RunStatus.pending,
        RunStatus.running,
        RunStatus.success,
    ]

"""A run from creation to its final status, on both backends, with a real prefork worker."""

from __future__ import annotations

import uuid

from runqueue import RunStatus


def thread() -> str:
    return f"thread-{uuid.uuid4().hex[:12]}"


def test_run_succeeds_with_result_and_history(manager, worker, journal):
    run = manager.create_or_reject(thread(), "echo", kwargs={"x": 1, "journal": str(journal)})
    assert run.status is RunStatus.pending

    done = manager.join(run.run_id, timeout=30)

    assert done.status is RunStatus.success
    assert done.result == {"echo": {"x": 1}, "turn": 1}
    assert done.started_at and done.ended_at and done.started_at <= done.ended_at
    assert done.worker and done.worker.startswith("w")
    assert [e.status for e in manager.events(run.run_id)] == [
        RunStatus.pending,
        RunStatus.running,
        RunStatus.success,
    ]
    # The assistant's own side effects prove it ran exactly once, in a pool child.
    lines = journal.lines()
    assert [line["event"] for line in lines] == ["start", "end"]
    assert lines[0]["pid"] in worker.pool_pids() or lines[0]["pid"] != worker.pid
    assert manager.checkpoints(run.thread_id)[-1].values["turns"] == 1


def test_failure_is_recorded_as_error(manager, worker):
    run = manager.create_or_reject(thread(), "fail", kwargs={"message": "boom 'quoted'"})
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.error
    assert done.error == "RuntimeError: boom 'quoted'"
    assert [e.status for e in manager.events(run.run_id)][-1] is RunStatus.error


def test_thread_state_carries_over_between_runs(manager, worker):
    thread_id = thread()
    first = manager.join(manager.create_or_reject(thread_id, "echo").run_id, timeout=30)
    second = manager.join(manager.create_or_reject(thread_id, "echo").run_id, timeout=30)
    assert (first.result["turn"], second.result["turn"]) == (1, 2)
    listed = manager.list_by_thread(thread_id)
    assert [r.run_id for r in listed] == [second.run_id, first.run_id]

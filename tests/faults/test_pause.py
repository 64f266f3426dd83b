"""Pauses: a process stopped (SIGSTOP, as a VM freeze or a long GC pause would) past its run's
lease, while another worker's reaper ends the run and the thread's next run executes; then
SIGCONT. The resumed process must write nothing more for the old run.

A prefork child resumes past the lease's end and exits at once, before any further line of
the assistant runs (the hard stop). A threads-pool worker cannot be stopped from outside: its
run stops at its first cooperative check after the resume, and writes nothing either.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from typing import Any

from runqueue import RunStatus, SyncRunManager
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import RunFactory, pid_alive


def _thread() -> str:
    return f"pause-{uuid.uuid4().hex[:10]}"


def _overlap(journal: Journal, run_id: str, other_id: str, after: float) -> float:
    """Seconds during which `run_id` executed after `after` (up to its last journal line)
    while `other_id` was executing (its first to last line): the wall-time overlap a resumed
    process caused."""
    own = [line["time"] for line in journal.lines(run_id=run_id) if line["time"] >= after]
    other = [line["time"] for line in journal.lines(run_id=other_id)]
    if not own or not other:
        return 0.0
    return max(0.0, min(max(own), max(other)) - max(after, min(other)))


def _pause_past_the_reap(
    manager: SyncRunManager, journal: Journal, pid: int, first, following, settings
) -> tuple[Any, dict[str, Any], float]:  # noqa: ANN001
    """SIGSTOP `pid` just after the first run journaled a step (so while it sleeps, outside
    any write), wait until the reaper ended the run and the next run is executing, SIGCONT.
    Returns the reaped record, what was written for it by then, and when it resumed."""
    seen = journal.count(run_id=first.run_id, event="step")
    faultkit.wait_for(
        lambda: journal.count(run_id=first.run_id, event="step") > seen, 10, "a fresh step"
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        ended = manager.join(first.run_id, timeout=settings.lease_seconds + 10)
        faultkit.wait_for(
            lambda: journal.count(run_id=following.run_id, event="step") >= 1,
            30,
            "the next run to execute",
        )
        before = faultkit.what_was_written(manager, first.run_id, first.thread_id)
    finally:
        os.kill(pid, signal.SIGCONT)
    return ended, before, time.time()


def test_a_pool_child_paused_past_its_lease_exits_on_resume_and_writes_nothing(
    shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (worker,) = workers(settings, concurrency=2)
    thread_id = _thread()
    first = factory(thread_id, steps=1000, delay=0.5)
    faultkit.wait_for(lambda: journal.count(run_id=first.run_id, event="step") >= 2, 30, "steps")
    following = factory(thread_id, steps=20, delay=0.2, strategy="enqueue")
    pid = journal.pid(first.run_id)
    assert pid in worker.pool_pids()

    ended, before, resumed_at = _pause_past_the_reap(
        manager, journal, pid, first, following, settings
    )
    faultkit.wait_for(lambda: not pid_alive(pid), settings.heartbeat_interval, "the child to exit")
    exited_after = time.time() - resumed_at
    time.sleep(1.0)  # anything the child could still write would be there by now
    after = faultkit.what_was_written(manager, first.run_id, thread_id)
    next_run = manager.join(following.run_id, timeout=30)
    ran_after_resume = [
        line for line in journal.lines(run_id=first.run_id) if line["time"] >= resumed_at
    ]
    exit_code = re.search(rf"pid:{pid} exited with '([^']+)'", worker.log())
    report(
        "pause-prefork-child",
        runs=2,
        lost=0 if next_run.is_final else 1,
        duplicated=journal.duplicated(),
        exited_after_resume_s=exited_after,
        lines_after_resume=len(ran_after_resume),
        checkpoints_after_end=len(after["checkpoints"]) - len(before["checkpoints"]),
        events_after_end=len(after["stream"]) - len(before["stream"]),
        status_changed=int(after["row"] != before["row"]),
        overlap_ms=round(1000 * _overlap(journal, first.run_id, following.run_id, resumed_at)),
        exit=(exit_code.group(1).replace(" ", "_") if exit_code else "?"),
    )
    assert ended.status is RunStatus.error and "lease expired" in (ended.error or "")
    assert after == before  # no checkpoint, event, history or status after the end
    assert not ran_after_resume  # not one more line of the assistant ran
    assert next_run.status is RunStatus.success
    assert f"run {first.run_id} still executing" in worker.log()  # the hard stop


def test_a_paused_threads_worker_stops_its_run_at_the_next_check_and_writes_nothing(
    shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (paused,) = workers(settings, concurrency=2, pool="threads")
    thread_id = _thread()
    first = factory(thread_id, steps=1000, delay=0.5)
    faultkit.wait_for(lambda: journal.count(run_id=first.run_id, event="step") >= 2, 30, "steps")
    following = factory(thread_id, steps=20, delay=0.2, strategy="enqueue")
    assert journal.pid(first.run_id) == paused.pid
    workers(settings, concurrency=1)  # reaps the paused worker's run, runs the next one

    ended, before, resumed_at = _pause_past_the_reap(
        manager, journal, paused.pid, first, following, settings
    )
    end = faultkit.wait_for(
        lambda: journal.first(first.run_id, "end"), settings.heartbeat_interval + 5, "the stop"
    )
    stopped_after = end["time"] - resumed_at
    time.sleep(1.0)
    after = faultkit.what_was_written(manager, first.run_id, thread_id)
    next_run = manager.join(following.run_id, timeout=30)
    report(
        "pause-threads-worker",
        runs=2,
        lost=0 if next_run.is_final else 1,
        duplicated=journal.duplicated(),
        stopped_after_resume_s=stopped_after,
        checkpoints_after_end=len(after["checkpoints"]) - len(before["checkpoints"]),
        events_after_end=len(after["stream"]) - len(before["stream"]),
        status_changed=int(after["row"] != before["row"]),
        overlap_ms=round(1000 * _overlap(journal, first.run_id, following.run_id, resumed_at)),
    )
    assert ended.status is RunStatus.error and "lease expired" in (ended.error or "")
    # The run went on after the resume only to its next write, which its own fence refused:
    # one step's sleep (0.5 s) at most, then its finally block.
    assert stopped_after <= 0.5 + 0.5
    assert after == before
    assert next_run.status is RunStatus.success
    log = paused.log()
    assert f"run {first.run_id} fenced" in log
    assert f"run {first.run_id}: lease lost, no final status written" in log
    assert paused.process is not None and paused.process.poll() is None  # the worker lives on


def test_a_hard_stopped_child_does_not_end_the_attempt_its_worker_claimed_since(
    shared_backend, workers, report, tmp_path
):
    """The reaper re-queues the paused child's run (its retry policy allows a second
    attempt) and the same worker claims attempt 2 in its other child. The resumed child
    stops itself (exit 75); the main process's WorkerLostError for attempt 1 must not end
    attempt 2, although the run is `running` on the same worker node again."""
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=2)
    run = manager.create(
        _thread(), "steps_retried", kwargs={"steps": 40, "delay": 0.5, "journal": str(journal)}
    )
    faultkit.wait_for(lambda: journal.count(run_id=run.run_id, event="step") >= 2, 30, "steps")
    pid = journal.pid(run.run_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        faultkit.wait_for(
            lambda: len({line["pid"] for line in journal.lines(run_id=run.run_id)}) == 2,
            settings.lease_seconds + 15,
            "attempt 2 in the other child",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    faultkit.wait_for(lambda: not pid_alive(pid), settings.heartbeat_interval, "the child to exit")
    ended = manager.join(run.run_id, timeout=60)
    report(
        "pause-then-same-worker-retry",
        runs=1,
        attempts=ended.attempt,
        status=ended.status.value,
        worker_lost_lines=worker.log().count("WorkerLostError"),
    )
    assert ended.status is RunStatus.success, (ended.status, ended.error)
    assert ended.attempt == 2

"""The four multitask strategies, on both backends, with real prefork workers.

Every claim about what executed comes from the assistants' own journal (pid, times)."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from itertools import pairwise

import pytest

from runqueue import (
    AbortAction,
    ConflictError,
    MultitaskStrategy,
    RunStatus,
    Settings,
    SyncRunManager,
    create_app,
)
from tests.support import pid_alive, wait_until
from workers.assistants import register_with_journal


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex[:12]}"


# -- reject -----------------------------------------------------------------------------------


def _race_create(settings: Settings, thread_id: str, barrier, results) -> None:
    """One creator process: build its own app and manager, then race at the barrier."""
    app = create_app(settings, name=f"racer-{os.getpid()}")
    register_with_journal(app)
    manager = SyncRunManager(app)
    barrier.wait(timeout=60)
    try:
        manager.create_or_reject(
            thread_id, "steps", kwargs={"steps": 1, "delay": 0.01}, multitask_strategy="reject"
        )
        results.put("accepted")
    except ConflictError:
        results.put("conflict")
    except Exception as exc:  # reported, so the test shows what went wrong
        results.put(f"error: {type(exc).__name__}: {exc}")


def test_reject_twenty_racing_processes_accept_exactly_one(backend, manager):
    thread_id = new_thread()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(20), context.Queue()
    creators = [
        context.Process(target=_race_create, args=(backend.settings, thread_id, barrier, results))
        for _ in range(20)
    ]
    for process in creators:
        process.start()
    outcomes = sorted(results.get(timeout=120) for _ in creators)
    for process in creators:
        process.join(30)

    assert outcomes.count("accepted") == 1, outcomes
    assert outcomes.count("conflict") == 19, outcomes
    assert len(manager.list_by_thread(thread_id)) == 1


# -- interrupt --------------------------------------------------------------------------------


def test_interrupt_stops_the_old_process_before_the_new_run_starts(
    manager, worker, journal, run_factory
):
    thread_id = new_thread()
    old = run_factory(thread_id, steps=200, delay=0.05)
    wait_until(
        lambda: journal.count(run_id=old.run_id, event="step") >= 3, message="old run stepping"
    )
    old_pid = journal.pid(old.run_id)

    new = run_factory(thread_id, steps=2, delay=0.05, strategy="interrupt")
    wait_until(
        lambda: not pid_alive(old_pid),
        timeout=2,
        interval=0.01,
        message="the interrupted run's process to die",
    )

    assert manager.join(new.run_id, timeout=30).status is RunStatus.success
    old_final = manager.join(old.run_id, timeout=10)
    assert old_final.status is RunStatus.interrupted
    assert old_final.abort_action is AbortAction.interrupt
    # Its partial checkpoints stay.
    assert any(c.run_id == old.run_id for c in manager.checkpoints(thread_id))
    intervals = journal.intervals()
    assert intervals[old.run_id][1] < intervals[new.run_id][0], intervals


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_the_thread_state_from_before_the_cancelled_run(
    manager, worker, journal, run_factory
):
    thread_id = new_thread()
    first = run_factory(thread_id, steps=2, delay=0.01)
    assert manager.join(first.run_id, timeout=30).status is RunStatus.success
    before = [(c.checkpoint_id, c.values) for c in manager.checkpoints(thread_id)]

    doomed = run_factory(thread_id, steps=200, delay=0.05)
    wait_until(
        lambda: journal.count(run_id=doomed.run_id, event="step") >= 3,
        message="doomed run stepping",
    )
    assert len(manager.checkpoints(thread_id)) > len(before)

    after_run = run_factory(thread_id, steps=0, strategy="rollback")
    assert manager.join(after_run.run_id, timeout=30).status is RunStatus.success

    assert [(c.checkpoint_id, c.values) for c in manager.checkpoints(thread_id)] == before
    # The next run saw exactly the state from before the cancelled run.
    assert journal.first(after_run.run_id)["values"] == before[-1][1]
    cancelled = manager.join(doomed.run_id, timeout=10)
    assert cancelled.status is RunStatus.interrupted
    assert cancelled.abort_action is AbortAction.rollback


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_runs_one_at_a_time_in_order_and_threads_in_parallel(
    manager, start_worker, journal, run_factory
):
    start_worker(concurrency=5)
    threads = [new_thread() for _ in range(5)]
    created: dict[str, list[str]] = {t: [] for t in threads}
    for _ in range(10):
        for thread_id in threads:
            run = run_factory(thread_id, steps=1, delay=0.05, strategy="enqueue")
            created[thread_id].append(run.run_id)
    for runs in created.values():
        for run_id in runs:
            assert manager.join(run_id, timeout=120).status is RunStatus.success

    intervals = journal.intervals()
    for thread_id, runs in created.items():
        starts = [line["run_id"] for line in journal.lines(thread_id=thread_id, event="start")]
        assert starts == runs, "runs of one thread must start in creation order"
        for earlier, later in pairwise(runs):
            assert intervals[earlier][1] <= intervals[later][0], "runs of a thread overlapped"
    # Different threads did run at the same time.
    events = sorted((t0, 1) for t0, _ in intervals.values()) + sorted(
        (t1, -1) for _, t1 in intervals.values()
    )
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert peak >= 2, f"threads never overlapped (peak concurrency {peak})"


# -- create without a strategy check ------------------------------------------------------------


def test_create_skips_the_strategy_but_still_waits_for_the_running_run(
    manager, worker, journal, run_factory
):
    thread_id = new_thread()
    first = run_factory(thread_id, steps=6, delay=0.05, check_strategy=False)
    wait_until(lambda: journal.first(first.run_id), message="first run start")
    second = run_factory(thread_id, steps=1, delay=0.01, strategy="reject", check_strategy=False)
    assert manager.join(second.run_id, timeout=30).status is RunStatus.success
    assert manager.get(first.run_id).status is RunStatus.success
    intervals = journal.intervals()
    assert intervals[first.run_id][1] <= intervals[second.run_id][0]


@pytest.mark.parametrize("strategy", list(MultitaskStrategy))
def test_each_strategy_on_an_idle_thread_just_runs(manager, worker, strategy):
    run = manager.create_or_reject(new_thread(), "echo", multitask_strategy=strategy)
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success

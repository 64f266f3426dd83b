"""A cancelled run's pool child exits (with whatever the run left running), and the next run
of its thread does not wait for the pool: runqueue.worker.pool_recycle.

Before: the child killed itself before its result reached the worker's main process, and
Celery's AsynPool noticed the exit before the kernel let it reap the child in about half of
the cases; the slot then stayed empty until the pool's 5 s timer (celery/celery#9588). On the
embedded backend a child forked while the main process wrote to SQLite could never write, and
the run it took waited for the relay (runqueue.store.fork_guard, tests/unit/test_fork_guard.py).
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from runqueue import RunStatus, SyncRunManager
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import pid_alive

CYCLES = 300
THREADS = 2  # one per single-slot worker: every next run needs the replacement child
SLOW_SECONDS = 2.0  # acceptance: no run waits longer than this to start
SLOT_BOUND_SECONDS = 1.0  # a cancelled run's slot runs the next run within this
CYCLES_BUDGET_SECONDS = 200.0  # the cycles stop here (~90 s when the pool keeps up)


def wait_started(manager: SyncRunManager, run_id: str, timeout: float = 60.0):  # noqa: ANN201
    return faultkit.wait_for(
        lambda: (run := manager.get(run_id)).started_at is not None and run,
        timeout,
        f"run {run_id} to start",
    )


def interrupt_cycles(
    settings,  # noqa: ANN001
    journal: Journal,
    cycles: int,
    deadline: float,
) -> list[tuple[str, float]]:
    """One thread of the test: each new run interrupts the thread's running run, so it
    arrives while the previous run's child exits. (run_id, create -> start seconds) each;
    fewer than `cycles` if the deadline (monotonic) passed first."""
    manager = faultkit.manager_for(settings)
    thread_id = f"cycles-{uuid.uuid4().hex[:10]}"
    waits: list[tuple[str, float]] = []
    for _ in range(cycles):
        if time.monotonic() > deadline:
            break
        run = manager.create_or_reject(
            thread_id,
            "steps",
            kwargs={"steps": 10_000, "delay": 0.2, "journal": str(journal)},
            multitask_strategy="interrupt",
        )
        started = wait_started(manager, run.run_id)
        waits.append((run.run_id, (started.started_at - started.created_at).total_seconds()))
        # Executing (its body began) when the next one comes.
        faultkit.wait_for(lambda: journal.first(run.run_id), 30, "the run's body")  # noqa: B023
        time.sleep(0.05)
    manager.cancel(waits[-1][0])
    manager.join(waits[-1][0], timeout=30)
    return waits


def test_interrupt_cycles_start_without_waiting_for_the_pool(
    shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    journal = Journal(tmp_path / "journal.jsonl")
    started = workers(settings, count=THREADS, concurrency=1)
    began = time.monotonic()
    deadline = began + CYCLES_BUDGET_SECONDS
    with ThreadPoolExecutor(THREADS) as drivers:
        per_thread = list(
            drivers.map(
                lambda _: interrupt_cycles(settings, journal, CYCLES // THREADS, deadline),
                range(THREADS),
            )
        )
    elapsed = time.monotonic() - began
    waits = sorted(wait for cycle in per_thread for _, wait in cycle)
    slow = sum(wait > SLOW_SECONDS for wait in waits)
    manager = faultkit.manager_for(settings)
    statuses = {manager.get(run_id).status for cycle in per_thread for run_id, _ in cycle}
    pids = [[journal.pid(run_id) for run_id, _ in cycle] for cycle in per_thread]
    same_child = sum(a == b for cycle in pids for a, b in zip(cycle, cycle[1:], strict=False))
    logs = "".join(worker.log() for worker in started)
    report(
        "interrupt-cycles",
        cycles=len(waits),
        workers=f"{THREADS}x1",
        wait_p50_s=statistics.median(waits),
        wait_p99_s=waits[int(len(waits) * 0.99) - 1],
        wait_max_s=waits[-1],
        over_2s=slow,
        same_child=same_child,
        overlapping=journal.overlapping(),
        elapsed_s=elapsed,
    )
    assert len(waits) == CYCLES
    assert slow == 0, f"{slow} runs waited over {SLOW_SECONDS}s to start: {waits[-5:]}"
    assert statuses == {RunStatus.interrupted}
    assert journal.overlapping() == 0
    assert same_child == 0  # an interrupted run's child never ran another run
    # Each cancelled child's result reached the main process before it exited.
    assert "WorkerLostError" not in logs and "exited with" not in logs
    # No revoke cut a checkpoint's statement in half (SQLAlchemy then logs an error while
    # resetting the connection): the SIGTERM waits for the statement (sigterm._statement).
    assert "Exception during reset" not in logs and "\nERROR " not in logs


def test_a_cancelled_runs_slot_runs_the_next_run_within_a_second(
    shared_backend, workers, report, tmp_path
):
    """One slot: the interrupted run's child exits, taking the thread the run started with
    it, and its replacement starts the next run within a second of the interrupt's end."""
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=1)
    thread_id = f"slot-{uuid.uuid4().hex[:10]}"
    free_after, ticks_after = [], []
    previous = manager.create(thread_id, "background_ticks", kwargs={"journal": str(journal)})
    for _ in range(10):
        faultkit.wait_for(lambda: journal.first(previous.run_id), 30, "the run's start")  # noqa: B023
        time.sleep(0.2)
        pid = journal.pid(previous.run_id)
        run = manager.create_or_reject(
            thread_id,
            "background_ticks",
            kwargs={"journal": str(journal)},
            multitask_strategy="interrupt",
        )
        started = wait_started(manager, run.run_id)
        ended = manager.get(previous.run_id)
        faultkit.wait_for(lambda: not pid_alive(pid), 10, "the interrupted run's child to exit")  # noqa: B023
        exited_at = time.time()
        time.sleep(0.2)  # a tick the thread still wrote would be on disk by now
        last_tick = max(
            line["time"] for line in journal.lines(run_id=previous.run_id, event="tick")
        )
        assert ended.status is RunStatus.interrupted
        free_after.append(started.started_at.timestamp() - ended.ended_at.timestamp())
        ticks_after.append(last_tick - ended.ended_at.timestamp())
        assert last_tick <= exited_at  # the run's own thread stopped with its process
        previous = run
    manager.cancel(previous.run_id)
    manager.join(previous.run_id, timeout=30)
    report(
        "slot-after-interrupt",
        interrupts=len(free_after),
        next_run_after_p50_s=statistics.median(free_after),
        next_run_after_max_s=max(free_after),
        thread_ticked_after_end_max_s=max(ticks_after),
    )
    assert max(free_after) <= SLOT_BOUND_SECONDS, free_after
    assert "WorkerLostError" not in worker.log() and "exited with" not in worker.log()

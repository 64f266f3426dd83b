"""Delayed runs (after_seconds), on both backends, with real prefork workers: started no
earlier than due and promptly after, durable across a worker restart, never run when
cancelled before due, and the strategies on a delayed run as the reference server applies
them. What executed, and when, comes from the assistants' own journal."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from sqlalchemy import select

from runqueue import ConflictError, RunRequest, RunStatus
from runqueue.celery.dispatch import publish
from runqueue.store.database import get_engine
from runqueue.store.models import Run
from runqueue.store.rows import aware
from tests.support import WorkerProcess, make_backend, wait_until

# The journal is written by the assistant (the host's clock); due_at and started_at by the
# database's clock (the same host): a start before due would show as a negative lag.
CLOCK_SLACK = 0.002  # seconds: SQLite keeps milliseconds, the journal microseconds


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex[:12]}"


def wait_final(manager, run_ids: list[str], timeout: float = 60.0) -> dict:  # noqa: ANN001
    """Every run's record once all are final."""

    def all_final() -> dict | None:
        runs = {run_id: manager.get(run_id) for run_id in run_ids}
        return runs if all(run.status.is_final for run in runs.values()) else None

    return wait_until(all_final, timeout=timeout, interval=0.2, message="runs final")


@pytest.fixture
def own_backend(backend, tmp_path):  # noqa: ANN001, ANN201
    """A fresh backend of the module's kind, that no other test's worker serves."""
    fresh = make_backend(backend.name, tmp_path)
    yield fresh
    fresh.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# The acceptance's 500 runs on PostgreSQL + Redis; the embedded backend (SQLite's one write
# lock, the filesystem broker: about 20 runs/s, docs/benchmarks.md) gets a load it can carry.
RUNS_DUE = {"postgres_redis": 500, "embedded": 30}
# started - due, p99, where the fleet of the test (2 workers x 2 children on this 2-core
# machine) can carry the load: PostgreSQL + Redis runs about 170 runs/s idle (docs/
# benchmarks.md), the 500 runs in 3 s ask for that much, so their start lag is the
# machine's throughput and is printed, not judged; the publish lag is judged on both.
STARTED_P99_BOUND = {"embedded": 1.0}


def test_500_delayed_runs_start_no_earlier_than_due_and_promptly_after(backend, journal, tmp_path):
    """The acceptance scenario: 500 runs due 0-3 s from now (embedded: 60). Every run starts
    once and never before due (the database's guard and the assistant's own clock), and the
    fleet publishes each promptly when due (its first publish: republish_after is long here,
    so the relay never republishes). How long after due each started is printed: it is the fleet's
    throughput too, which this 2-core machine bounds (see the FIGURE line)."""
    fleet = make_backend(backend.name, tmp_path, republish_after=600.0)
    workers = [
        WorkerProcess(fleet.settings, tmp_path / f"worker{n}.log", concurrency=2).start()
        for n in range(2)
    ]
    try:
        manager = fleet.manager()
        rng = random.Random(28)
        runs = manager.create_many(
            [
                RunRequest(
                    new_thread(), "echo", kwargs={"journal": str(journal)}, after=rng.uniform(0, 3)
                )
                for _ in range(RUNS_DUE[backend.name])
            ]
        )
        assert all(run.status is RunStatus.pending and run.due_at is not None for run in runs)
        final = wait_final(manager, [run.run_id for run in runs], timeout=120)
        published = first_publishes(fleet, [run.run_id for run in runs])
    finally:
        for worker in workers:
            worker.stop()
        fleet.close()

    starts = {line["run_id"]: line["time"] for line in journal.lines(event="start")}
    started_lags, published_lags = [], []
    for run in final.values():
        assert run.status is RunStatus.success, (run.run_id, run.error)
        assert run.started_at >= run.due_at  # the database's own guard
        assert starts[run.run_id] >= run.due_at.timestamp() - CLOCK_SLACK  # the assistant's
        started_lags.append((run.started_at - run.due_at).total_seconds())
        published_lags.append((published[run.run_id] - run.due_at).total_seconds())
    assert journal.starts() == {run.run_id: 1 for run in runs}  # each executed once
    assert min(published_lags) >= 0  # never published before due
    figures = {
        name: (percentile(lags, 0.5), percentile(lags, 0.99), max(lags))
        for name, lags in (("published", published_lags), ("started", started_lags))
    }
    print(
        f"FIGURE delayed runs ({backend.name}): {len(runs)} runs due in 0-3 s; "
        + "; ".join(
            f"{name} - due: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {top * 1000:.0f} ms"
            for name, (p50, p99, top) in figures.items()
        )
    )
    assert figures["published"][1] <= 1.0
    assert figures["started"][1] <= STARTED_P99_BOUND.get(backend.name, float("inf"))


def first_publishes(backend, run_ids: list[str]) -> dict:  # noqa: ANN001
    """When each run was published (dispatched_at: its first publish, as the relay never
    republished it here)."""
    with get_engine(backend.settings.database_url).connect() as conn:
        rows = conn.execute(
            select(Run.run_id, Run.dispatched_at).where(Run.run_id.in_(run_ids))
        ).all()
    return {row.run_id: aware(row.dispatched_at) for row in rows}


def test_a_worker_restart_in_the_middle_loses_no_delayed_run(own_backend, journal, tmp_path):
    """60 runs due 0-4 s from now; the only worker stops (warm shutdown) once some have run,
    and a new one starts 1 s after: runs fell due while none lived, and every run still
    runs, once, never before due."""
    manager = own_backend.manager()
    log = tmp_path / "worker.log"
    worker = WorkerProcess(own_backend.settings, log).start()
    try:
        rng = random.Random(7)
        runs = manager.create_many(
            [
                RunRequest(
                    new_thread(), "echo", kwargs={"journal": str(journal)}, after=rng.uniform(0, 4)
                )
                for _ in range(60)
            ]
        )
        wait_until(lambda: journal.count(event="start") >= 3, message="some runs started")
        stopping = time.time()
        worker.stop()
        time.sleep(1.0)
        worker = WorkerProcess(own_backend.settings, log).start()
        restarted = time.time()
        final = wait_final(manager, [run.run_id for run in runs])
    finally:
        worker.stop()
    assert all(run.status is RunStatus.success for run in final.values())
    assert all(run.started_at >= run.due_at for run in final.values())
    # Once each, but for a run the warm shutdown caught mid-body: handed back, pending
    # again, it runs once more (an attempt each; docs/operations.md, "The fleet").
    assert journal.starts() == {run.run_id: run.attempt for run in final.values()}
    handed_back = sum(run.attempt - 1 for run in final.values())
    gap = sum(stopping < run.due_at.timestamp() < restarted for run in final.values())
    print(
        f"FIGURE delayed runs ({own_backend.name}): 60 runs, {gap} fell due in the "
        f"{restarted - stopping:.1f} s without a live worker; none lost; "
        f"{handed_back} handed back at the shutdown and run again"
    )
    assert gap > 0


def test_a_delayed_run_cancelled_before_due_never_runs(backend, manager, journal, worker):
    # Due in 3 s: the creates and cancels are done well before, even on a loaded machine.
    delayed = [
        manager.create_or_reject(new_thread(), "echo", kwargs={"journal": str(journal)}, after=3.0)
        for _ in range(5)
    ]
    control = manager.create_or_reject(
        new_thread(), "echo", kwargs={"journal": str(journal)}, after=3.0
    )
    assert all(manager.cancel(run.run_id) for run in delayed)
    wait_final(manager, [control.run_id])
    time.sleep(1.0)  # a further due-loop period past the due time
    for run in delayed:
        assert manager.get(run.run_id).status is RunStatus.interrupted
        assert journal.first(run.run_id) is None
    assert journal.first(control.run_id) is not None


def test_a_stray_early_delivery_does_not_start_a_delayed_run(backend, manager, journal, worker):
    run = manager.create_or_reject(new_thread(), "echo", kwargs={"journal": str(journal)}, after=5)
    assert publish(manager.app, manager.runtime, run)  # a message before due: the claim refuses
    time.sleep(1.0)
    looked_at = time.time()
    assert journal.first(run.run_id) is None
    assert manager.get(run.run_id).status is RunStatus.pending
    final = wait_final(manager, [run.run_id])[run.run_id]
    assert looked_at < final.due_at.timestamp()  # the look above was before due
    assert final.status is RunStatus.success
    assert journal.first(run.run_id)["time"] >= final.due_at.timestamp() - CLOCK_SLACK
    assert journal.starts()[run.run_id] == 1


def test_the_fleet_claims_each_due_publish_once(own_backend):
    """Four claimers racing over 200 due runs (no worker): disjoint, and all of them."""
    manager = own_backend.manager()
    runs = manager.create_many([RunRequest(new_thread(), "echo", after=0.2) for _ in range(200)])
    time.sleep(0.5)
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claimer() -> None:
        store = own_backend.manager().store
        barrier.wait()
        mine: list[str] = []
        while batch := store.claim_due_publishes(limit=25):
            mine += [run.run_id for run in batch]
        claimed.append(mine)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [run_id for mine in claimed for run_id in mine]
    assert len(every) == len(set(every)) == 200
    assert set(every) == {run.run_id for run in runs}


# -- strategies -------------------------------------------------------------------------------


def test_reject_refuses_a_run_on_a_thread_with_a_delayed_run(manager):
    thread_id = new_thread()
    delayed = manager.create_or_reject(thread_id, "echo", after=30)
    with pytest.raises(ConflictError):
        manager.create_or_reject(thread_id, "echo", multitask_strategy="reject")
    assert manager.cancel(delayed.run_id)


def test_interrupt_cancels_a_delayed_run_which_never_runs(manager, journal, worker):
    thread_id = new_thread()
    delayed = manager.create_or_reject(
        thread_id, "echo", kwargs={"journal": str(journal)}, after=1.0
    )
    newer = manager.create_or_reject(
        thread_id, "echo", kwargs={"journal": str(journal)}, multitask_strategy="interrupt"
    )
    wait_final(manager, [newer.run_id])
    time.sleep(1.5)
    assert manager.get(delayed.run_id).status is RunStatus.interrupted
    assert journal.first(delayed.run_id) is None
    assert manager.get(newer.run_id).status is RunStatus.success


def test_a_held_delayed_run_released_before_due_still_waits_for_due(manager, journal, run_factory):
    thread_id = new_thread()
    running = run_factory(thread_id, steps=2, delay=0.25)  # ends about 0.5 s in
    delayed = manager.create_or_reject(
        thread_id,
        "echo",
        kwargs={"journal": str(journal)},
        multitask_strategy="enqueue",
        after=2.0,
    )
    final = wait_final(manager, [running.run_id, delayed.run_id])
    ended = final[running.run_id].ended_at
    assert ended < final[delayed.run_id].due_at  # released before it was due
    start = journal.first(delayed.run_id)["time"]
    assert start >= final[delayed.run_id].due_at.timestamp() - CLOCK_SLACK
    lag = (final[delayed.run_id].started_at - final[delayed.run_id].due_at).total_seconds()
    assert 0 <= lag <= 1.0


def test_a_delayed_run_due_while_its_thread_runs_starts_after_that_run(
    manager, journal, run_factory
):
    thread_id = new_thread()
    running = run_factory(thread_id, steps=6, delay=0.25)  # ends about 1.5 s in
    delayed = manager.create_or_reject(
        thread_id,
        "echo",
        kwargs={"journal": str(journal)},
        multitask_strategy="enqueue",
        after=0.3,
    )
    final = wait_final(manager, [running.run_id, delayed.run_id])
    assert final[delayed.run_id].status is RunStatus.success
    last_step = journal.lines(run_id=running.run_id, event="end")[0]["time"]
    assert journal.first(delayed.run_id)["time"] >= last_step

"""Scenario 4: many creators racing on one thread, for reject, interrupt and enqueue.

The creators are threads spread over several processes (each with its own engine and
connections), released together by a barrier. Decisions/s counts create_or_reject calls
answered (accepted or ConflictError). Correctness is asserted from the database and the
worker: reject accepts exactly one; at no moment do two runs of the thread run; nothing is
lost; enqueue executes in creation order without overlap.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from benchmarks.harness import Bench, make_manager, wait_for
from benchmarks.plan import Plan
from benchmarks.stats import over_repetitions
from benchmarks.tasks import SLEEP
from runqueue import ConflictError, Settings
from runqueue.store.models import Run

STRATEGIES = ("reject", "interrupt", "enqueue")

_process_manager: Any = None
_process_barrier: Any = None


def _init_creator(settings: Settings, barrier: Any) -> None:
    global _process_manager, _process_barrier
    _process_manager = make_manager(settings)
    _process_barrier = barrier
    _process_manager.store.engine.connect().close()  # connect before the race


def _creators(
    strategy: str, thread_id: str, threads: int, decisions: int, assistant: str, kwargs: dict
) -> dict[str, Any]:
    """In one creator process: `threads` threads, `decisions` calls each, started together."""
    manager = _process_manager
    outcomes: list[tuple[str, str | None, float]] = []
    lock = threading.Lock()
    go = threading.Event()

    def creator() -> None:
        go.wait()
        for _ in range(decisions):
            try:
                run = manager.create_or_reject(
                    thread_id, assistant, kwargs=kwargs, multitask_strategy=strategy
                )
                outcome = ("accepted", run.run_id, time.time())
            except ConflictError:
                outcome = ("rejected", None, time.time())
            except Exception as exc:  # any other answer is a failure of the scenario
                outcome = ("error", f"{type(exc).__name__}: {exc}", time.time())
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=creator) for _ in range(threads)]
    for worker in workers:
        worker.start()
    _process_barrier.wait(timeout=120)
    started = time.time()
    go.set()
    for worker in workers:
        worker.join()
    return {"started": started, "outcomes": outcomes}


class RunningMonitor(threading.Thread):
    """Samples how many runs of the thread are running; the maximum must stay <= 1."""

    def __init__(self, bench: Bench, thread_id: str):
        super().__init__(daemon=True)
        self.bench, self.thread_id = bench, thread_id
        self.maximum, self.samples = 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        query = (
            select(func.count())
            .select_from(Run)
            .where(Run.thread_id == self.thread_id, Run.status == "running")
        )
        while not self.stopped.is_set():
            with self.bench.manager().store.transaction() as conn:
                self.maximum = max(self.maximum, conn.execute(query).scalar_one())
            self.samples += 1
            time.sleep(0.005)


def _runs(bench: Bench, thread_id: str) -> list[Any]:
    return list(reversed(bench.manager().list_by_thread(thread_id, limit=100_000)))


def _check(bench: Bench, strategy: str, thread_id: str, outcomes: list) -> dict[str, Any]:
    """Correctness of one race, from the database once the worker is done with the thread."""
    manager = bench.manager()
    accepted = [run_id for kind, run_id, _ in outcomes if kind == "accepted"]
    errors = [detail for kind, detail, _ in outcomes if kind == "error"]
    # Active: pending or running and not being cancelled (an interrupted run keeps reading
    # `running` until its process has stopped; that is what keeps its successor waiting).
    inflight_after_race = sum(
        run.status.value in ("pending", "running") and run.abort_action is None
        for run in _runs(bench, thread_id)
    )
    problems = [f"error: {error}" for error in errors[:3]]
    if strategy == "reject":
        if len(accepted) != 1:
            problems.append(f"reject accepted {len(accepted)} runs, expected exactly 1")
        for run_id in accepted:  # the long run that won: stop it
            manager.cancel(run_id)
    wait_for(
        lambda: not manager.has_inflight(thread_id),
        timeout=120,
        interval=0.05,
        what=f"thread {thread_id} to settle",
    )
    runs = _runs(bench, thread_id)
    if sorted(run.run_id for run in runs) != sorted(accepted):
        problems.append(f"{len(accepted)} accepted but {len(runs)} recorded")
    if strategy != "enqueue" and inflight_after_race > 1:
        problems.append(f"{inflight_after_race} runs active right after the race")
    statuses = [run.status.value for run in runs]
    if strategy == "interrupt" and runs:
        if statuses[-1] != "success":
            problems.append(f"the last interrupt run ended {statuses[-1]}")
        if any(status not in ("interrupted", "success") for status in statuses[:-1]):
            problems.append(f"unexpected statuses {sorted(set(statuses))}")
    if strategy == "enqueue":
        if any(status != "success" for status in statuses):
            problems.append(f"enqueue statuses {sorted(set(statuses))}")
        for earlier, later in zip(runs, runs[1:], strict=False):
            if later.started_at is None or earlier.ended_at is None:
                continue
            if later.started_at < earlier.ended_at:
                problems.append("enqueue runs overlapped or ran out of creation order")
                break
    return {
        "accepted": len(accepted),
        "rejected": sum(kind == "rejected" for kind, _, _ in outcomes),
        "errors": len(errors),
        "inflight_after_race": inflight_after_race,
        "statuses": {status: statuses.count(status) for status in sorted(set(statuses))},
        "problems": problems,
    }


def race(bench: Bench, plan: Plan, pool: Any, strategy: str) -> dict[str, Any]:
    thread_id = f"race-{strategy}-{uuid.uuid4().hex[:8]}"
    # reject: the winner must stay active for the whole race, so it sleeps; the others are
    # no-ops that the worker finishes (or that the next decision interrupts).
    assistant, kwargs = ("noop", {})
    if strategy == "reject":
        assistant, kwargs = SLEEP, {"path": str(bench.path("race-stamps")), "seconds": 300}
    threads = plan.contention_creators // plan.contention_processes
    monitor = RunningMonitor(bench, thread_id)
    monitor.start()
    jobs = [
        pool.apply_async(
            _creators,
            (strategy, thread_id, threads, plan.contention_decisions, assistant, kwargs),
        )
        for _ in range(plan.contention_processes)
    ]
    results = [job.get(timeout=600) for job in jobs]
    outcomes = [outcome for result in results for outcome in result["outcomes"]]
    started = min(result["started"] for result in results)
    finished = max(at for _, _, at in outcomes)
    check = _check(bench, strategy, thread_id, outcomes)
    monitor.stopped.set()
    monitor.join()
    if monitor.maximum > 1:
        check["problems"].append(f"{monitor.maximum} runs of the thread running at once")
    return {
        "decisions": len(outcomes),
        "seconds": finished - started,
        "per_second": len(outcomes) / (finished - started),
        "max_running_seen": monitor.maximum,
        "monitor_samples": monitor.samples,
        **check,
    }


def run(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Needs a runqueue worker on the bench's queue."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(plan.contention_processes)
    results: dict[str, Any] = {}
    with context.Pool(
        plan.contention_processes, initializer=_init_creator, initargs=(bench.settings, barrier)
    ) as pool:
        for strategy in STRATEGIES:
            reps = [race(bench, plan, pool, strategy) for _ in range(plan.repetitions)]
            results[strategy] = {
                **over_repetitions([rep["per_second"] for rep in reps]),
                "correct": all(not rep["problems"] for rep in reps),
                "details": reps,
            }
    results["creators"] = plan.contention_creators
    results["processes"] = plan.contention_processes
    results["correct"] = all(results[strategy]["correct"] for strategy in STRATEGIES)
    return results

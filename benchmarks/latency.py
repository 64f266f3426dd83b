"""Scenario 2, create cost: create() alone and create -> the assistant's own start, against
raw publish -> task start. Scenario 3, cancel: cancel() of a running run -> its pool process
is dead, against raw revoke(terminate=True) -> dead. One sample at a time, so each measures
an idle system, not a queue."""

from __future__ import annotations

import time
import uuid
from typing import Any

from benchmarks.harness import Bench, StampWatcher, wait_for, wait_for_pool
from benchmarks.plan import Plan
from benchmarks.stats import latency_summary, over_repetitions, ratio
from benchmarks.tasks import RAW_SLEEP, RAW_STAMP, SLEEP, STAMP
from runqueue import RunStatus
from tests.support import WorkerProcess, pid_alive

PAUSE = 0.01  # between samples, on both sides


def _final(bench: Bench, run_id: str, timeout: float = 30.0) -> Any:
    manager = bench.manager()
    wait_for(lambda: manager.get(run_id).is_final, timeout, 0.005, f"run {run_id} final")
    return manager.get(run_id)


def create_once(bench: Bench, samples: int) -> dict[str, list[float]]:
    manager = bench.manager()
    watcher = StampWatcher(bench.path("stamps"))
    prefix = f"lat-{uuid.uuid4().hex[:8]}"
    create, to_start, to_running = [], [], []
    for index in range(samples):
        before = time.time()
        run = manager.create(f"{prefix}-{index}", STAMP, kwargs={"path": str(watcher.path)})
        after = time.time()
        started, _pid = watcher.wait(run.run_id)
        done = _final(bench, run.run_id)
        create.append(after - before)
        to_start.append(started - before)
        to_running.append((done.started_at - done.created_at).total_seconds())
        time.sleep(PAUSE)
    return {"create": create, "to_start": to_start, "to_running_db": to_running}


def raw_create_once(bench: Bench, samples: int) -> dict[str, list[float]]:
    task = bench.raw_app().tasks[RAW_STAMP]
    watcher = StampWatcher(bench.path("raw-stamps"))
    publish, to_start = [], []
    for _ in range(samples):
        before = time.time()
        result = task.apply_async(args=[str(watcher.path)])
        after = time.time()
        started, _pid = watcher.wait(result.id)
        publish.append(after - before)
        to_start.append(started - before)
        time.sleep(PAUSE)
    return {"create": publish, "to_start": to_start}


def _latency_figures(reps: list[dict[str, list[float]]], key: str) -> dict[str, Any]:
    summaries = [latency_summary(rep[key]) for rep in reps]
    return {
        "p50_ms": over_repetitions([s["p50_ms"] for s in summaries]),
        "p99_ms": over_repetitions([s["p99_ms"] for s in summaries]),
    }


def run_create(bench: Bench, plan: Plan) -> dict[str, Any]:
    create_once(bench, 3)  # warm-up
    raw_create_once(bench, 3)
    runqueue_reps, raw_reps = [], []
    for _ in range(plan.repetitions):
        runqueue_reps.append(create_once(bench, plan.latency_samples))
        raw_reps.append(raw_create_once(bench, plan.latency_samples))
    runqueue = {key: _latency_figures(runqueue_reps, key) for key in runqueue_reps[0]}
    raw = {key: _latency_figures(raw_reps, key) for key in raw_reps[0]}
    return {
        "samples_per_repetition": plan.latency_samples,
        "runqueue": runqueue,
        "raw": raw,
        "create_ratio_p50": ratio(
            runqueue["create"]["p50_ms"]["median"], raw["create"]["p50_ms"]["median"]
        ),
        "to_start_ratio_p50": ratio(
            runqueue["to_start"]["p50_ms"]["median"], raw["to_start"]["p50_ms"]["median"]
        ),
        "to_start_ratio_p99": ratio(
            runqueue["to_start"]["p99_ms"]["median"], raw["to_start"]["p99_ms"]["median"]
        ),
    }


def _until_dead(pid: int, timeout: float = 30.0) -> float:
    return wait_for(lambda: not pid_alive(pid), timeout, 0.001, f"pid {pid} to die")


def cancel_once(bench: Bench, worker: WorkerProcess, samples: int) -> dict[str, list[float]]:
    manager = bench.manager()
    watcher = StampWatcher(bench.path("cancel-stamps"))
    to_dead, to_status, call = [], [], []
    for index in range(samples):
        run = manager.create(
            f"cancel-{uuid.uuid4().hex[:8]}-{index}",
            SLEEP,
            kwargs={"path": str(watcher.path), "seconds": 120},
        )
        _started, pid = watcher.wait(run.run_id)
        time.sleep(0.05)  # well inside the body
        before = time.time()
        assert manager.cancel(run.run_id), "cancel of a running run returned False"
        returned = time.time()
        dead = _until_dead(pid)
        final = _final(bench, run.run_id)
        assert final.status is RunStatus.interrupted, final.status
        ended = final.ended_at.timestamp()
        call.append(returned - before)
        to_dead.append(dead - before)
        to_status.append(max(ended, dead) - before)
        wait_for_pool(worker, bench.concurrency)
        time.sleep(PAUSE)
    return {"cancel_call": call, "to_dead": to_dead, "to_status": to_status}


def raw_cancel_once(bench: Bench, worker: WorkerProcess, samples: int) -> dict[str, list[float]]:
    app = bench.raw_app()
    task = app.tasks[RAW_SLEEP]
    watcher = StampWatcher(bench.path("raw-cancel-stamps"))
    to_dead, call = [], []
    for _ in range(samples):
        result = task.apply_async(args=[str(watcher.path)], kwargs={"seconds": 120})
        _started, pid = watcher.wait(result.id)
        time.sleep(0.05)
        before = time.time()
        app.control.revoke(result.id, terminate=True, signal="SIGTERM")
        returned = time.time()
        dead = _until_dead(pid)
        call.append(returned - before)
        to_dead.append(dead - before)
        wait_for_pool(worker, bench.concurrency)
        time.sleep(PAUSE)
    return {"cancel_call": call, "to_dead": to_dead}


def run_cancel(
    bench: Bench, plan: Plan, worker: WorkerProcess, raw_worker: WorkerProcess
) -> dict[str, Any]:
    runqueue_reps, raw_reps = [], []
    for _ in range(plan.repetitions):
        runqueue_reps.append(cancel_once(bench, worker, plan.cancel_samples))
        raw_reps.append(raw_cancel_once(bench, raw_worker, plan.cancel_samples))
    runqueue = {key: _latency_figures(runqueue_reps, key) for key in runqueue_reps[0]}
    raw = {key: _latency_figures(raw_reps, key) for key in raw_reps[0]}
    # p99 over every sample of every repetition: a handful per repetition has no tail.
    pooled = [value for rep in runqueue_reps for value in rep["to_dead"]]
    raw_pooled = [value for rep in raw_reps for value in rep["to_dead"]]
    return {
        "samples_per_repetition": plan.cancel_samples,
        "runqueue": runqueue,
        "raw": raw,
        "runqueue_to_dead_all": latency_summary(pooled),
        "raw_to_dead_all": latency_summary(raw_pooled),
        "to_dead_ratio_p50": ratio(
            runqueue["to_dead"]["p50_ms"]["median"], raw["to_dead"]["p50_ms"]["median"]
        ),
    }

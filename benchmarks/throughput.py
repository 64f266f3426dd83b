"""Scenario 1: no-op runs end to end, runqueue (every run final in the database) against raw
`apply_async` (every task executed), on the same broker, pool and concurrency."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from benchmarks.harness import Bench, wait_for
from benchmarks.plan import Plan
from benchmarks.stats import over_repetitions, ratio
from benchmarks.tasks import RAW_NOOP, count_lines


def runqueue_once(bench: Bench, runs: int) -> dict[str, Any]:
    manager = bench.manager()
    prefix = f"tp-{uuid.uuid4().hex[:8]}"
    before = bench.final_count()
    started = time.perf_counter()
    for index in range(runs):
        manager.create(f"{prefix}-{index}", "noop")
    created = time.perf_counter()
    wait_for(
        lambda: bench.final_count() - before >= runs,
        timeout=60 + runs / 5,
        interval=0.02,
        what=f"{runs} runqueue runs to finish",
    )
    elapsed = time.perf_counter() - started
    counts = bench.status_counts(prefix)
    return {
        "runs": runs,
        "seconds": elapsed,
        "create_seconds": created - started,
        "per_second": runs / elapsed,
        "succeeded": counts.get("success", 0),
        "lost": runs - counts.get("success", 0),
    }


def raw_once(bench: Bench, tasks: int) -> dict[str, Any]:
    task = bench.raw_app().tasks[RAW_NOOP]
    path = bench.path("raw-noop")
    started = time.perf_counter()
    for _ in range(tasks):
        task.apply_async(args=[str(path)])
    published = time.perf_counter()
    wait_for(
        lambda: count_lines(path) >= tasks,
        timeout=60 + tasks / 5,
        interval=0.02,
        what=f"{tasks} raw tasks to run",
    )
    elapsed = time.perf_counter() - started
    executed = count_lines(path)
    return {
        "runs": tasks,
        "seconds": elapsed,
        "create_seconds": published - started,
        "per_second": tasks / elapsed,
        "succeeded": executed,
        "lost": tasks - executed,
    }


def sized(rate: float, seconds: float, minimum: int) -> int:
    """Enough runs to last `seconds` at the warm-up rate."""
    return max(minimum, math.ceil(rate * seconds * 1.1))


def run(bench: Bench, plan: Plan) -> dict[str, Any]:
    # Warm-up on both sides (connections, imports, pool children), which also sizes N.
    runqueue_rate = runqueue_once(bench, plan.warmup_runs)["per_second"]
    raw_rate = raw_once(bench, plan.warmup_runs)["per_second"]
    runqueue_n = sized(runqueue_rate, plan.throughput_seconds, plan.warmup_runs)
    raw_n = sized(raw_rate, plan.throughput_seconds, plan.warmup_runs)
    runqueue_reps, raw_reps = [], []
    for _ in range(plan.repetitions):  # interleaved, so drift hits both sides alike
        runqueue_reps.append(runqueue_once(bench, runqueue_n))
        raw_reps.append(raw_once(bench, raw_n))
    runqueue = over_repetitions([rep["per_second"] for rep in runqueue_reps])
    raw = over_repetitions([rep["per_second"] for rep in raw_reps])
    return {
        "runqueue": {**runqueue, "runs_per_repetition": runqueue_n, "details": runqueue_reps},
        "raw": {**raw, "runs_per_repetition": raw_n, "details": raw_reps},
        "ratio": ratio(runqueue["median"], raw["median"]),
        "lost": sum(rep["lost"] for rep in runqueue_reps + raw_reps),
    }

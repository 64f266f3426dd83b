"""Scenario 6, database writes per run: every statement, transaction and connection checkout,
counted with SQLAlchemy events in the creating process and in the worker's pool children.
Scenario 7, memory: peak RSS of a worker (main process + pool children) and of a process
creating runs, after a small and after a large number of runs."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks.harness import Bench, make_manager, wait_for
from benchmarks.plan import Plan
from benchmarks.sqlcount import SqlCounter, difference, read_worker_counts
from benchmarks.stats import ratio
from runqueue import Settings
from runqueue.store.models import Run
from tests.support import WorkerProcess, child_pids

MAX_PENDING = 300  # the memory creator waits when the worker falls this far behind


def per_run(counts: dict[str, int], runs: int) -> dict[str, float]:
    return {key: round(value / runs, 2) for key, value in sorted(counts.items()) if value}


def writes(bench: Bench, plan: Plan, sql_dir: Path) -> dict[str, Any]:
    """Needs a worker on bench.counted_settings started with RUNQUEUE_BENCH_SQL_DIR=sql_dir."""
    manager = make_manager(bench.counted_settings)
    runs = plan.writes_runs
    prefix = f"writes-{uuid.uuid4().hex[:8]}"
    manager.create(f"{prefix}-warmup", "noop")
    wait_for(lambda: read_worker_counts(sql_dir)["tasks"] >= 1, 60, 0.05, "warm-up run")
    worker_before = read_worker_counts(sql_dir)
    creator: dict[str, dict[str, float]] = {}
    for method in ("create", "create_or_reject"):
        counter = SqlCounter().install()
        try:
            for index in range(runs):
                getattr(manager, method)(f"{prefix}-{method}-{index}", "noop")
        finally:
            counter.remove()
        creator[method] = per_run(counter.snapshot(), runs)
    total = 2 * runs
    wait_for(
        lambda: read_worker_counts(sql_dir)["tasks"] - worker_before["tasks"] >= total,
        timeout=120,
        interval=0.05,
        what="the counted runs to finish",
    )
    worker = difference(read_worker_counts(sql_dir), worker_before)
    worker.pop("tasks", None)
    bench.purge_runs(manager)
    return {"runs": total, "creator": creator, "worker": per_run(worker, total)}


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process in KiB; (0, 0) once it is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in values:
                values[parts[0]] = int(parts[1])
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


def _create_runs(settings: Settings, marks: list[int], connection: Any) -> None:
    """The creating process: create runs, report its RSS at each mark."""
    manager = make_manager(settings)
    pending = select(func.count()).select_from(Run).where(Run.status == "pending")
    prefix = f"mem-{uuid.uuid4().hex[:8]}"
    for index in range(max(marks)):
        if index % 100 == 0:
            while True:
                with manager.store.transaction() as conn:
                    if conn.execute(pending).scalar_one() < MAX_PENDING:
                        break
                time.sleep(0.05)
        manager.create(f"{prefix}-{index}", "noop")
        if index + 1 in marks:
            rss, peak = rss_kib(multiprocessing.current_process().pid)
            connection.send({"runs": index + 1, "rss_kib": rss, "peak_kib": peak})
    connection.close()


def _receive(receiver: Any, readings: dict[int, dict[str, int]]) -> None:
    try:
        while receiver.poll():
            reading = receiver.recv()
            readings[reading["runs"]] = reading
    except EOFError:  # the creator is done and closed its end
        pass


def memory(bench: Bench, plan: Plan, worker: WorkerProcess) -> dict[str, Any]:
    """Needs a worker that was fresh when the writes scenario began."""
    marks = list(plan.memory_runs(bench.name))
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    base = bench.final_count()
    creator = context.Process(target=_create_runs, args=(bench.counted_settings, marks, sender))
    creator.start()
    sender.close()
    worker_readings: dict[int, dict[str, int]] = {}
    creator_readings: dict[int, dict[str, int]] = {}
    peak_total = 0
    deadline = time.monotonic() + 60 + marks[1] / 5
    try:
        while len(worker_readings) < len(marks):
            if time.monotonic() > deadline:
                raise TimeoutError(f"memory scenario: {bench.final_count() - base} runs done")
            pids = [worker.pid, *child_pids(worker.pid)]
            readings = [rss_kib(pid) for pid in pids]
            peak_total = max(peak_total, sum(rss for rss, _ in readings))
            done = bench.final_count() - base
            for mark in marks:
                if done >= mark and mark not in worker_readings:
                    worker_readings[mark] = {
                        "runs": done,
                        "peak_total_rss_kib": peak_total,
                        "sum_of_peaks_kib": sum(peak for _, peak in readings),
                        "processes": len(pids),
                    }
            _receive(receiver, creator_readings)
            time.sleep(0.25)
        creator.join(timeout=60)
        _receive(receiver, creator_readings)
    finally:
        if creator.is_alive():
            creator.terminate()
            creator.join()
    small, large = marks
    return {
        "runs_small": small,
        "runs_large": large,
        "worker": {str(mark): worker_readings[mark] for mark in marks},
        "creator": {str(mark): creator_readings.get(mark) for mark in marks},
        "worker_ratio": ratio(
            worker_readings[large]["peak_total_rss_kib"],
            worker_readings[small]["peak_total_rss_kib"],
        ),
        "creator_ratio": ratio(
            creator_readings[large]["peak_kib"], creator_readings[small]["peak_kib"]
        ),
    }

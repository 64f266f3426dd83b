"""The overhead runqueue adds to a LangGraph graph run, end to end: the example graph
(workers/graphs.py: four nodes, a fake streaming chat model) run through runqueue
(create() -> a prefork worker -> join()) against invoking the same graph in this process
with the same official checkpointer on the same database; and, as the floor, a `noop` run
through runqueue. Then the same for the graph's async twin (benchmarks/graph_async.py: the
same nodes as `async def`), through runqueue against its `astream` in this process with the
official async saver. Rounds interleave the sides; each run is on a new thread. Prints a
table and writes JSON; never asserts a time.

    python -m benchmarks.graph                     # both backends, about 2 minutes
    python -m benchmarks.graph --quick             # smoke test (tests/integration)
    python -m benchmarks.graph --backend postgres_redis --out graph.json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import make_url

from benchmarks.graph_async import ASYNC_ASSISTANT, REGISTER, AsyncInProcess
from benchmarks.stats import percentile
from runqueue import RunStatus, SyncRunManager
from tests.support import Backend, WorkerProcess, make_backend
from workers.assistants import WITH_JOURNAL
from workers.graphs import build_research_graph

BACKENDS = ("postgres_redis", "embedded")
GRAPH_INPUT = {"topic": "benchmarks"}  # no pause, no interrupt: the graph's own cost
TARGET_OVERHEAD_P50_MS = 10.0  # on PostgreSQL + Redis


def _thread() -> str:
    return f"bench-graph-{uuid.uuid4().hex[:10]}"


@contextmanager
def official_saver(backend: Backend) -> Iterator[BaseCheckpointSaver]:
    """The official saver on the backend's database, as an application would open it."""
    url = make_url(backend.settings.database_url)
    if url.get_backend_name() == "postgresql":
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with PostgresSaver.from_conn_string(libpq) as saver:
            saver.setup()
            yield saver
    else:
        connection = sqlite3.connect(url.database, check_same_thread=False, timeout=30)
        try:
            saver = SqliteSaver(connection)
            saver.setup()
            yield saver
        finally:
            connection.close()


def in_process(graph: Any, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        graph.invoke(GRAPH_INPUT, {"configurable": {"thread_id": _thread()}})
        times.append(time.perf_counter() - started)
    return times


def through_runqueue(
    manager: SyncRunManager, samples: int, assistant: str = "research"
) -> list[float]:
    kwargs = {"input": GRAPH_INPUT} if assistant in ("research", ASYNC_ASSISTANT) else {}
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        run = manager.create(_thread(), assistant, kwargs=kwargs)
        final = manager.join(run.run_id, timeout=60)
        times.append(time.perf_counter() - started)
        assert final.status is RunStatus.success, final.error
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {q: percentile(times, n) * 1000 for q, n in (("p50_ms", 50), ("p90_ms", 90),
                                                         ("p99_ms", 99))}  # fmt: skip


def run_backend(name: str, workdir: Path, quick: bool) -> dict[str, Any]:
    backend = make_backend(name, workdir / name, imports=f"{WITH_JOURNAL},{REGISTER}")
    worker = WorkerProcess(backend.settings, workdir / f"{name}-worker.log", concurrency=1).start()
    manager = backend.manager()
    rounds, samples = (1, 5) if quick else (5, 60)
    sides: dict[str, list[float]] = {
        "in_process": [], "runqueue": [], "runqueue_noop": [],  # the sync graph; the floor
        "async_in_process": [], "async_runqueue": [],  # the async twin
    }  # fmt: skip
    async_side: AsyncInProcess | None = None
    try:
        with official_saver(backend) as saver:
            graph = build_research_graph().copy(update={"checkpointer": saver})
            async_side = AsyncInProcess(backend, GRAPH_INPUT)
            measures = {
                "in_process": lambda n: in_process(graph, n),
                "runqueue": lambda n: through_runqueue(manager, n),
                "runqueue_noop": lambda n: through_runqueue(manager, n, "noop"),
                "async_in_process": async_side.times,
                "async_runqueue": lambda n: through_runqueue(manager, n, ASYNC_ASSISTANT),
            }
            for measure in measures.values():  # warm up every side
                measure(3)
            for _ in range(rounds):
                for side, measure in measures.items():
                    sides[side] += measure(samples)
    finally:
        if async_side is not None:
            async_side.close()
        worker.stop()
        backend.close()
    inproc, runq, base = (summary(sides[side]) for side in ("in_process", "runqueue",
                                                            "runqueue_noop"))  # fmt: skip
    async_inproc, async_runq = summary(sides["async_in_process"]), summary(sides["async_runqueue"])
    return {
        "runs_per_side": len(sides["in_process"]),
        "in_process": inproc,
        "runqueue": runq,
        "runqueue_noop": base,
        "overhead_p50_ms": runq["p50_ms"] - inproc["p50_ms"],
        "overhead_p90_ms": runq["p90_ms"] - inproc["p90_ms"],
        "overhead_p99_ms": runq["p99_ms"] - inproc["p99_ms"],
        # What the graph adds beyond a run of nothing: fenced writes, streaming, threads.
        "graph_specific_p50_ms": runq["p50_ms"] - inproc["p50_ms"] - base["p50_ms"],
        "async": {
            "runs_per_side": len(sides["async_in_process"]),
            "in_process": async_inproc,
            "runqueue": async_runq,
            "overhead_p50_ms": async_runq["p50_ms"] - async_inproc["p50_ms"],
            "overhead_p99_ms": async_runq["p99_ms"] - async_inproc["p99_ms"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.graph", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/graph.json"))
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    started = time.perf_counter()
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "backends": {}}
    with tempfile.TemporaryDirectory(prefix="runqueue-graph-bench-") as workdir:
        for name in backends:
            report["backends"][name] = run_backend(name, Path(workdir), args.quick)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'backend':15} | {'side':13} | {'p50 ms':>8} | {'p90 ms':>8} | {'p99 ms':>8}")
    print(f"{'-' * 15}-+-{'-' * 13}-+-{'-' * 8}-+-{'-' * 8}-+-{'-' * 8}")
    for name in backends:
        results = report["backends"][name]
        for side in ("in_process", "runqueue", "runqueue_noop"):
            s = results[side]
            print(f"{name:15} | {side:13} | {s['p50_ms']:>8.1f} | {s['p90_ms']:>8.1f} | "
                  f"{s['p99_ms']:>8.1f}")  # fmt: skip
    print()
    for name in backends:
        overhead = report["backends"][name]["overhead_p50_ms"]
        verdict = (
            f"target <= {TARGET_OVERHEAD_P50_MS:g} ms: "
            + ("met" if overhead <= TARGET_OVERHEAD_P50_MS else "MISSED")
            if name == "postgres_redis"
            else "reported (target: PostgreSQL + Redis)"
        )
        print(f"{name:15} | overhead per graph run, p50: {overhead:.1f} ms | {verdict}")
        specific = report["backends"][name]["graph_specific_p50_ms"]
        print(f"{name:15} | of which beyond a no-op run, p50: {specific:.1f} ms")
    print_sync_and_async(report, backends)
    print(f"\n{report['mode']} run, {report['elapsed_seconds']} s; JSON in {args.out}")
    return 0


def print_sync_and_async(report: dict[str, Any], backends: tuple[str, ...]) -> None:
    """The async graph's figures beside the sync graph's: each side's p50 / p99, and what
    runqueue adds over the same graph in process."""
    print(f"\n{'backend':15} | {'graph':5} | {'in process p50/p99':>18} | "
          f"{'runqueue p50/p99':>18} | {'overhead p50/p99':>18}")  # fmt: skip
    print(f"{'-' * 15}-+-{'-' * 5}-+-{'-' * 18}-+-{'-' * 18}-+-{'-' * 18}")
    for name in backends:
        results = report["backends"][name]
        for graph, figures in (("sync", results), ("async", results["async"])):
            local, queued = figures["in_process"], figures["runqueue"]
            print(
                f"{name:15} | {graph:5} | "
                f"{local['p50_ms']:>8.1f} / {local['p99_ms']:>7.1f} | "
                f"{queued['p50_ms']:>8.1f} / {queued['p99_ms']:>7.1f} | "
                f"{figures['overhead_p50_ms']:>8.1f} / {figures['overhead_p99_ms']:>7.1f}"
            )


if __name__ == "__main__":
    sys.exit(main())

"""The run stream's figures, on each backend, with a real prefork worker: emit -> reader
latency, events per second of one run read by one reader, 100 concurrent readers, Redis
memory of 1,000 finished streams at the cap, and join() after the final status against the
50 ms polling it replaced. Prints a table and writes JSON; never asserts a time.

    python -m benchmarks.stream                    # both backends, about 3 minutes
    python -m benchmarks.stream --quick            # smoke test (tests/integration)
    python -m benchmarks.stream --backend postgres_redis --out stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks.stats import latency_summary
from runqueue import RunManager, RunStatus, Settings, SyncRunManager
from runqueue.stream import open_stream
from tests.support import Backend, WorkerProcess, make_backend

BACKENDS = ("postgres_redis", "embedded")
TARGETS = {  # figure -> (bound, "<=" or ">=")
    "emit->reader p50 ms": (5.0, "<="),
    "emit->reader p99 ms": (20.0, "<="),
    "events/s, one run, one reader": (20_000.0, ">="),
    "join() after final status p50 ms": (10.0, "<="),
}


def _thread() -> str:
    return f"bench-stream-{uuid.uuid4().hex[:10]}"


def emit_latency(manager: SyncRunManager, events: int) -> dict[str, Any]:
    """A run emits `events` stamped events 5 ms apart; a reader notes when each arrives."""
    run = manager.create(
        _thread(), "emitter", kwargs={"count": events, "delay": 0.005, "stamp": True}
    )
    delays = [
        time.time() - event.data["at"]
        for event in manager.stream(run.run_id)
        if event.event == "tick"
    ]
    return {"events": len(delays), **latency_summary(delays)}


def one_reader_rate(manager: SyncRunManager, events: int) -> dict[str, Any]:
    """A run emits as fast as it can; one reader, started before it, reads it all. The rate
    runs from the reader's `metadata` (the attempt started) to its `end`."""
    run = manager.create(_thread(), "emitter", kwargs={"count": events})
    arrived: dict[str, float] = {}
    count = 0
    for event in manager.stream(run.run_id):
        count += event.event == "tick"
        arrived.setdefault(event.event, time.perf_counter())
    seconds = arrived["end"] - arrived["metadata"]
    # A reader slower than the writer by more than the cap would get a `gap` first.
    return {"events": count, "gap": "gap" in arrived, "seconds": seconds,
            "events_per_s": count / seconds}  # fmt: skip


def many_readers(manager: SyncRunManager, readers: int, events: int) -> dict[str, Any]:
    """`readers` async readers in one event loop follow one run emitting `events` events;
    the fan-out cost is this process's CPU time per event delivered."""
    runs = RunManager(manager.app)
    run = manager.create(_thread(), "emitter", kwargs={"count": events, "delay": 0.001})

    async def read_one() -> int:
        return sum([1 async for event in runs.stream(run.run_id) if event.event == "tick"])

    async def read_all() -> list[int]:
        return await asyncio.gather(*(read_one() for _ in range(readers)))

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    counts = asyncio.run(read_all())
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    delivered = sum(counts)
    return {
        "readers": readers,
        "events": events,
        "complete_readers": sum(count == events for count in counts),
        "seconds": elapsed,
        "reader_cpu_seconds": cpu,
        "cpu_us_per_event_per_reader": cpu / delivered * 1e6 if delivered else float("nan"),
    }


def join_latency(manager: SyncRunManager, samples: int) -> dict[str, Any]:
    """join() against the 50 ms polling loop it replaced, waiting on the same runs at once:
    each returns some time after the run's final status was committed (ended_at)."""
    joined, polled = [], []
    for _ in range(samples):
        run = manager.create(_thread(), "echo")
        returned: dict[str, float] = {}

        def poll(run_id: str = run.run_id, returned: dict[str, float] = returned) -> None:
            while not manager.get(run_id).is_final:
                time.sleep(0.05)
            returned["poll"] = time.time()

        poller = threading.Thread(target=poll)
        poller.start()
        final = manager.join(run.run_id, timeout=30)
        returned["join"] = time.time()
        poller.join()
        ended = final.ended_at.timestamp()
        joined.append(returned["join"] - ended)
        polled.append(returned["poll"] - ended)
        time.sleep(0.02)
    return {"join": latency_summary(joined), "poll_50ms": latency_summary(polled)}


def redis_memory(backend: Backend, runs: int, cap: int) -> dict[str, Any]:
    """Memory Redis holds for `runs` finished streams, each written past its MAXLEN cap
    (small events, as a token stream's), measured on a spare database of the same Redis."""
    spare = backend.settings.broker_url.rsplit("/", 1)[0] + "/15"
    settings = backend.settings.with_overrides(stream_url=spare, stream_max_events=cap)
    stream = open_stream(settings)
    client = redis.Redis.from_url(settings.stream_url)
    client.flushdb()
    before = client.info("memory")["used_memory"]
    cap = settings.stream_max_events
    for _ in range(runs):
        run_id = str(uuid.uuid4())
        stream.open(run_id, "token", thread_id="t", attempt=1)
        for start in range(0, cap + 100, 1000):
            batch = [
                ("messages", json.dumps({"n": n, "token": "word"}))
                for n in range(start, min(start + 1000, cap + 100))
            ]
            stream.append(run_id, "token", batch)
        stream.end(run_id, RunStatus.success)
    after = client.info("memory")["used_memory"]
    entries = sum(
        client.xlen(key)
        for key in client.scan_iter("runqueue:stream:*", count=1000)
        if not key.endswith(b":head")
    )
    client.flushdb()
    return {
        "runs": runs,
        "cap": cap,
        "entries_kept": entries,
        "used_memory_mib": (after - before) / 2**20,
        "bytes_per_run": (after - before) / runs,
    }


def run_backend(name: str, workdir: Path, quick: bool) -> dict[str, Any]:
    # A cap no reader here falls behind by: every figure is of whole streams.
    backend = make_backend(name, workdir / name, stream_max_events=100_000)
    worker = WorkerProcess(backend.settings, workdir / f"{name}-worker.log", concurrency=2).start()
    manager = SyncRunManager(backend.manager().app)
    results: dict[str, Any] = {}
    try:
        manager.join(manager.create(_thread(), "echo").run_id, timeout=60)  # warm up
        results["latency"] = emit_latency(manager, 50 if quick else 400)
        results["one_reader"] = one_reader_rate(manager, 2000 if quick else 50_000)
        results["many_readers"] = many_readers(
            manager, 10 if quick else 100, 200 if quick else 2000
        )
        results["join"] = join_latency(manager, 10 if quick else 100)
        if name == "postgres_redis":
            default_cap = Settings().stream_max_events
            results["redis_memory"] = redis_memory(
                backend, 20 if quick else 1000, 1000 if quick else default_cap
            )
    finally:
        worker.stop()
        backend.close()
    return results


def rows(name: str, results: dict[str, Any]) -> list[tuple[str, str, float]]:
    out = [
        (name, "emit->reader p50 ms", results["latency"]["p50_ms"]),
        (name, "emit->reader p99 ms", results["latency"]["p99_ms"]),
        (name, "events/s, one run, one reader", results["one_reader"]["events_per_s"]),
        (
            name,
            f"{results['many_readers']['readers']} readers: complete",
            results["many_readers"]["complete_readers"],
        ),
        (
            name,
            f"{results['many_readers']['readers']} readers: seconds",
            results["many_readers"]["seconds"],
        ),
        (
            name,
            "readers: CPU us per event per reader",
            results["many_readers"]["cpu_us_per_event_per_reader"],
        ),
        (name, "join() after final status p50 ms", results["join"]["join"]["p50_ms"]),
        (name, "join() after final status p99 ms", results["join"]["join"]["p99_ms"]),
        (name, "50 ms polling after final status p50 ms", results["join"]["poll_50ms"]["p50_ms"]),
    ]
    if "redis_memory" in results:
        memory = results["redis_memory"]
        out.append(
            (
                name,
                f"Redis MiB, {memory['runs']} finished streams at cap {memory['cap']}",
                memory["used_memory_mib"],
            )
        )
    return out


def verdict(name: str, figure: str, value: float) -> str:
    """Met or missed, for the targets the issue sets on PostgreSQL + Redis; the embedded
    transport's figures are reported beside them."""
    if figure not in TARGETS:
        return ""
    if name != "postgres_redis":
        return "reported (targets: PostgreSQL + Redis)"
    bound, sense = TARGETS[figure]
    met = value <= bound if sense == "<=" else value >= bound
    return f"target {sense} {bound:g}: {'met' if met else 'MISSED'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stream.json"))
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    started = time.perf_counter()
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "backends": {}}
    with tempfile.TemporaryDirectory(prefix="runqueue-stream-bench-") as workdir:
        for name in backends:
            report["backends"][name] = run_backend(name, Path(workdir), args.quick)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    table = [row for name in backends for row in rows(name, report["backends"][name])]
    width = max(len(figure) for _, figure, _ in table)
    print(f"{'backend':15} | {'figure':{width}} | {'value':>10} | verdict")
    print(f"{'-' * 15}-+-{'-' * width}-+-{'-' * 10}-+--------")
    for name, figure, value in table:
        print(f"{name:15} | {figure:{width}} | {value:>10.1f} | {verdict(name, figure, value)}")
    print(f"\n{report['mode']} run, {report['elapsed_seconds']} s; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""runqueue's HTTP API (`runqueue serve`) side by side with the LangGraph reference server
(`langgraph dev`, in-memory runtime), in one run, rounds interleaved between the two:

1. `POST /threads/{id}/runs` (a background run on a new thread per request, enqueue,
   if_not_exists=create) from 1, 50 and 200 concurrent clients, each with its own connection,
   each sending its next request when the last one answered: latency p50/p99 and runs/s.
   The runs are executed meanwhile (runqueue: a prefork worker on PostgreSQL + Redis; the
   reference: its in-process job runners), and each side's backlog is drained before the
   other side is measured. CPU time per run of the server (and of runqueue's worker);
2. `POST /threads/{id}/runs/stream`, one at a time: request -> the `metadata` event, and
   request -> the first event after it, p50/p99;
3. silent runs (the graph sleeps), one join stream (`GET .../runs/{id}/stream`) each, all held
   open at once: how many were served (200) and were still open after the hold, and the
   server's RSS (VmRSS of its process and its children) before and with them.

Both servers run the same one-node `noop` graph (benchmarks/api_noop.py), registered on
runqueue by benchmarks/api_app.py. One uvicorn process each; the load comes from this
process, on the same 2 cores. The reference keeps every run in memory and scans them all
to pick the next: it slows as the benchmark goes on, which is why the order of the sides
flips every round.
Prints a table and writes JSON; never asserts a time.

    python -m benchmarks.api                 # about 4 minutes
    python -m benchmarks.api --quick         # smoke test, under a minute (tests/integration)
    python -m benchmarks.api --out api.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api_report import (
    CONCURRENCY,
    FULL,
    QUICK,
    Plan,
    print_table,
    summarize,
    targets,
)
from benchmarks.api_servers import (
    System,
    cores_between,
    start_reference,
    start_runqueue,
    tree_rss_kib,
)

SILENT_RUN_SECONDS = 300.0  # a held stream's run outlasts the phase; it is cancelled after
_TLS = ssl.create_default_context()  # built once: httpx would build one per client


# -- the load --------------------------------------------------------------------------------------


def _run_body(**graph_input: Any) -> dict[str, Any]:
    return {
        "assistant_id": "noop",
        "input": graph_input,
        "multitask_strategy": "enqueue",
        "if_not_exists": "create",
    }


@asynccontextmanager
async def _clients(
    system: System, count: int, *, streams: bool = False
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One httpx client per simulated user, each with its one connection, already open.

    One shared client would measure httpx: its pool costs the caller 3.5-5.7 ms of CPU per
    request at 50-200 connections, against about 1 ms with a client each (GET /ok, here)."""
    timeout = httpx.Timeout(60.0, read=None if streams else 60.0)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=system.url, timeout=timeout, verify=_TLS)
            )
            for _ in range(count)
        ]
        # Connected before the clock starts (the servers close a connection idle for 5 s).
        await asyncio.gather(*(client.get("/ok") for client in clients))
        yield clients


async def _share(
    users: list[httpx.AsyncClient],
    jobs: list[Any],
    job: Callable[[httpx.AsyncClient, Any], Awaitable[None]],
) -> None:
    """Each user takes the next job until none is left."""
    queue = iter(jobs)

    async def user(client: httpx.AsyncClient) -> None:
        for item in queue:
            await job(client, item)

    await asyncio.gather(*(user(client) for client in users))


async def create_phase(system: System, clients: int, requests: int) -> dict[str, Any]:
    """`clients` users, each creating runs on new threads, one after another."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def create(client: httpx.AsyncClient, _: int) -> None:
        started = time.perf_counter()
        try:
            answer = await client.post(f"/threads/{uuid.uuid4()}/runs", json=_run_body())
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            return
        if answer.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors[str(answer.status_code)] += 1

    async with _clients(system, clients) as users:
        before = system.cpu()
        started = time.perf_counter()
        await _share(users, list(range(requests)), create)
        seconds = time.perf_counter() - started
        after = system.cpu()
    return {
        "latencies": latencies,
        "seconds": seconds,
        "errors": dict(errors),
        "cores": cores_between(before, after),
        "cpu_before": before,
    }


async def drain(system: System, timeout: float = 180.0) -> float:
    """Wait until the system has executed every run created so far: the seconds it took
    (math.inf if some were still in flight after `timeout`)."""
    started = time.perf_counter()
    while system.backlog() > 0:
        if time.perf_counter() - started > timeout:
            return math.inf
        await asyncio.sleep(0.25)  # the reference counts its backlog by scanning every run
    return time.perf_counter() - started


async def first_event_phase(system: System, samples: int) -> dict[str, Any]:
    """Streamed runs one at a time: request -> `metadata`, request -> the next event."""
    to_metadata: list[float] = []
    to_first: list[float] = []
    names: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    async with _clients(system, 1) as (client,):
        for _ in range(samples):
            metadata_at = first_at = None
            started = time.perf_counter()
            path = f"/threads/{uuid.uuid4()}/runs/stream"
            try:
                async with client.stream("POST", path, json=_run_body(seconds=0)) as answer:
                    if answer.status_code != 200:
                        errors[str(answer.status_code)] += 1
                        continue
                    async for line in answer.aiter_lines():  # to its end: the run is done
                        if not line.startswith("event:"):
                            continue
                        event, now = line[6:].strip(), time.perf_counter()
                        if event == "metadata":
                            metadata_at = metadata_at or now
                        elif first_at is None:
                            first_at = now
                            names[event] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            if metadata_at is None or first_at is None:
                errors["incomplete stream"] += 1
                continue
            to_metadata.append(metadata_at - started)
            to_first.append(first_at - started)
    return {
        "metadata": to_metadata,
        "first": to_first,
        "first_event_names": dict(names),
        "errors": dict(errors),
    }


async def _create_silent_run(client: httpx.AsyncClient, runs: list[tuple[str, str]]) -> None:
    path = f"/threads/{uuid.uuid4()}/runs"
    answer = await client.post(path, json=_run_body(seconds=SILENT_RUN_SECONDS))
    run = answer.raise_for_status().json()
    runs.append((run["thread_id"], run["run_id"]))


async def _cancel_run(client: httpx.AsyncClient, run: tuple[str, str]) -> None:
    # A cleanup: no cancel holds it up (the reference answers the cancel of a run whose node
    # sleeps in a thread only once the node returns).
    with contextlib.suppress(httpx.HTTPError):
        await client.post(f"/threads/{run[0]}/runs/{run[1]}/cancel", timeout=5.0)


async def streams_phase(system: System, count: int, hold_seconds: float) -> dict[str, Any]:
    """`count` join streams of silent runs, held open at once; the server's RSS with them."""
    errors: Counter[str] = Counter()
    seen: Counter[str] = Counter()  # served (200), ended (however), first_event; run ids

    async def hold(client: httpx.AsyncClient, thread_id: str, run_id: str) -> None:
        try:
            async with client.stream("GET", f"/threads/{thread_id}/runs/{run_id}/stream") as a:
                if a.status_code != 200:
                    errors[str(a.status_code)] += 1
                    return
                seen["served"] += 1
                async for line in a.aiter_lines():
                    if line.startswith("event:") and not seen[run_id]:
                        seen[run_id] = 1
                        seen["first_event"] += 1
            errors["closed early"] += 1
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
        finally:
            seen["ended"] += 1

    runs: list[tuple[str, str]] = []
    async with _clients(system, 50) as users:
        await _share(users, [runs] * count, _create_silent_run)
    await asyncio.sleep(1.0)  # the runs that start have started
    rss_before = tree_rss_kib(system.pid)
    async with _clients(system, count, streams=True) as streaming:
        started = time.perf_counter()
        holders = [
            asyncio.create_task(hold(client, *run))
            for client, run in zip(streaming, runs, strict=True)
        ]
        while seen["served"] + seen["ended"] < count and time.perf_counter() - started < 120:
            await asyncio.sleep(0.02)
        seconds_to_serve = time.perf_counter() - started
        await asyncio.sleep(hold_seconds)
        rss_with = tree_rss_kib(system.pid)
        worker_rss = tree_rss_kib(system.worker_pid) if system.worker_pid else None
        open_at_end = sum(not task.done() for task in holders)
        served, first_events = seen["served"], seen["first_event"]
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    async with _clients(system, 50) as users:
        await _share(users, runs, _cancel_run)
    drained = await drain(system, timeout=10.0)  # noted, not waited for: nothing follows
    return {
        "requested": count,
        "served": served,
        "open_at_end": open_at_end,
        "first_event_received": first_events,
        "seconds_to_serve": seconds_to_serve,
        "errors": dict(errors),
        "rss_before_streams_kib": rss_before,
        "rss_streams_kib": rss_with,
        "drained_after_cancel_seconds": drained if math.isfinite(drained) else None,
        "worker_rss_kib": worker_rss,
    }


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def measure(systems: list[System], plan: Plan) -> None:
    """Every phase on every system, rounds interleaved (the order flips each round); each
    side's runs are executed before the other side is measured."""
    for system in systems:  # first connections, first graph runs, imports in pool children
        await create_phase(system, 5, 20)
        await first_event_phase(system, 2)
        await drain(system)
        system.results["rss_start_kib"] = tree_rss_kib(system.pid)
    for number in range(1, plan.rounds + 1):
        order = systems if number % 2 else systems[::-1]
        for clients in CONCURRENCY:
            for system in order:
                result = await create_phase(system, clients, plan.creates[clients])
                result["drain_seconds"] = await drain(system)
                if math.isinf(result["drain_seconds"]):
                    raise RuntimeError(f"{system.name}: runs still in flight after 180 s")
                done = system.cpu()
                before = result.pop("cpu_before")
                result["cpu_seconds"] = {
                    key: done[key] - before[key] for key in ("server", "worker")
                }
                system.results.setdefault(f"create_c{clients}", []).append(result)
                rate = len(result["latencies"]) / result["seconds"]
                _progress(
                    f"round {number} {system.name}: {clients} clients, {rate:.0f} runs/s, "
                    f"drained in {result['drain_seconds']:.1f} s"
                )
        for system in order:
            result = await first_event_phase(system, plan.first_events)
            system.results.setdefault("first_event", []).append(result)
        _progress(f"round {number}: streamed runs")
    for system in systems if plan.rounds % 2 else systems[::-1]:
        system.results["streams"] = await streams_phase(system, plan.streams, plan.hold_seconds)
        _progress(f"{system.name}: {plan.streams} streams")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.api", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/api.json"))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started, load_at_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="runqueue-api-bench-") as tmp, ExitStack() as stack:
        systems = [start_runqueue(Path(tmp), stack), start_reference(Path(tmp), stack)]
        _progress("both servers ready")
        asyncio.run(measure(systems, plan))
        _progress("stopping")
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "systems": {system.name: summarize(system) for system in systems},
        "load_average": {
            "start": [round(value, 2) for value in load_at_start],
            "end": [round(value, 2) for value in os.getloadavg()],
        },
    }
    report["targets"] = targets(report)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report, plan)
    print(f"\n{report['mode']} run, {report['elapsed_seconds']} s; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenario 8, peers: runqueue beside raw Celery (task events off and on), Celery with its
database result backend and Procrastinate, on the same PostgreSQL and Redis with the same
execution slots. No-op jobs end to end with one producer and with several producer threads,
in rounds interleaved across the systems; single-submit latency; create_many against a publish
loop; and how many PostgreSQL connections runqueue's creates open."""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Any

import psycopg
from kombu.exceptions import ChannelError
from sqlalchemy import event

from benchmarks.harness import Bench, wait_for
from benchmarks.peer_load import Peer, latency_figures, once, produce, submit_latencies
from benchmarks.peer_systems import PeerSet, RunqueueBatch
from benchmarks.plan import Plan
from benchmarks.stats import over_repetitions, ratio
from benchmarks.tasks import RAW_NOOP, create_raw_app
from runqueue.celery.routing import run_queue
from tests.support import POSTGRES_ADMIN_URL

SHAPES = ("serial", "threads")  # one producer; plan.peer_producers producer threads
SUBMITS = {  # the single-submit call measured for each peer that has one
    "runqueue": "runqueue_create",
    "procrastinate": "procrastinate_defer",
    "celery_raw_events_off": "celery_apply_async",
}


def sized(rate: float, seconds: float, minimum: int) -> int:
    """Enough jobs to last `seconds` at the warm-up rate."""
    return max(minimum, math.ceil(rate * seconds * 1.1))


def end_to_end(peers: list[Peer], plan: Plan) -> dict[str, Any]:
    """Both load shapes for every peer, round after round, each round visiting every peer."""
    producers = {"serial": 1, "threads": plan.peer_producers}
    sizes = {}
    for peer in peers:  # warm-up (connections, pool children, imports), which also sizes N
        sizes[peer.name] = sized(
            once(peer, plan.warmup_runs, 1)["per_second"], plan.throughput_seconds, plan.warmup_runs
        )
        once(peer, plan.warmup_runs, plan.peer_producers)
    details: dict[str, dict[str, list[dict[str, Any]]]] = {
        shape: {peer.name: [] for peer in peers} for shape in SHAPES
    }
    for _ in range(plan.repetitions):
        for shape in SHAPES:
            for peer in peers:
                details[shape][peer.name].append(once(peer, sizes[peer.name], producers[shape]))
    figures = {
        shape: {
            name: {
                **over_repetitions([rep["per_second"] for rep in reps]),
                "jobs_per_repetition": sizes[name],
                "details": reps,
            }
            for name, reps in details[shape].items()
        }
        for shape in SHAPES
    }
    ratios = {
        shape: {
            name: ratio(figures[shape]["runqueue"]["median"], figure["median"])
            for name, figure in figures[shape].items()
            if name != "runqueue"
        }
        for shape in SHAPES
    }
    lost = sum(rep["lost"] for shape in SHAPES for reps in details[shape].values() for rep in reps)
    return {"e2e": figures, "ratios": ratios, "lost": lost}


def submit_latency(peers: list[Peer], plan: Plan) -> dict[str, Any]:
    """Serial single submits, after a warm-up, interleaved per repetition."""
    timed = [peer for peer in peers if peer.name in SUBMITS]
    for peer in timed:
        submit_latencies(peer, 5)
    samples: dict[str, list[list[float]]] = {peer.name: [] for peer in timed}
    for _ in range(plan.repetitions):
        for peer in timed:
            samples[peer.name].append(submit_latencies(peer, plan.peer_latency_samples))
    return {SUBMITS[name]: latency_figures(reps) for name, reps in samples.items()}


def pg_sessions(database: str) -> int:
    """Sessions ever opened on the database (pg_stat_database; backends report at most once
    a second, hence the pause)."""
    time.sleep(1.1)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    return int(row[0]) if row else -1


def connections(bench: Bench, creates: int, threads: int) -> dict[str, Any]:
    """New connections runqueue's engine opens while `threads` threads share one manager for
    `creates` create() calls; the runs are then left to finish, untimed."""
    engine = bench.manager().store.engine
    database = engine.url.database
    opened: list[int] = []
    lock = threading.Lock()

    def count(*_: Any) -> None:
        with lock:
            opened.append(1)

    sessions_before = pg_sessions(database)
    batch = RunqueueBatch(bench)
    event.listen(engine, "connect", count)
    try:
        started = produce(batch, creates, threads)
        seconds = time.perf_counter() - started
    finally:
        event.remove(engine, "connect", count)
    sessions = pg_sessions(database) - sessions_before
    wait_for(lambda: batch.succeeded() >= creates, 60 + creates / 5, 0.05, "the counted runs")
    return {
        "threads": threads,
        "creates": creates,
        "seconds": seconds,
        "new_connections": len(opened),
        "per_1000_creates": len(opened) * 1000 / creates,
        "pool_size": engine.pool.size(),
        "pg_sessions_delta": sessions,  # every client of the database, the worker included
        "pg_sessions_per_1000_creates": sessions * 1000 / creates,
    }


def queue_length(app: Any, queue: str) -> int:
    """Messages waiting in a broker queue (0 when Redis holds none: it has no such key)."""
    with app.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        except ChannelError:
            return 0
        return declared.message_count


def create_many(bench: Bench, runs: int) -> dict[str, Any]:
    """One create_many() of `runs` runs (recorded and published) against a loop of `runs`
    apply_async; nothing consumes either queue, so both measure the producer alone."""
    manager = bench.manager()
    create_many_method = getattr(manager, "create_many", None)
    if create_many_method is None:
        return {"skipped": "create_many not available"}
    import runqueue  # RunRequest arrives with create_many

    prefix = f"peer-many-{uuid.uuid4().hex[:8]}"
    requests = [
        runqueue.RunRequest(thread_id=f"{prefix}-{index}", assistant_id="noop")
        for index in range(runs)
    ]
    queue = run_queue(manager.runtime, "noop")  # the noop assistant's own queue
    queued_before = queue_length(manager.app, queue)
    started = time.perf_counter()
    outcomes = create_many_method(requests)
    seconds = time.perf_counter() - started
    published = queue_length(manager.app, queue) - queued_before
    recorded = sum(bench.status_counts(prefix).values())

    raw_app = create_raw_app(bench.settings.with_overrides(queue=f"{queue}-peer-publish"))
    raw_queue = raw_app.conf.task_default_queue
    task, scratch = raw_app.tasks[RAW_NOOP], str(bench.path("peer-publish"))
    try:
        task.apply_async(args=[scratch])  # the connection and the queue, before the clock
        raw_before = queue_length(raw_app, raw_queue)
        raw_started = time.perf_counter()
        for _ in range(runs):
            task.apply_async(args=[scratch])
        raw_seconds = time.perf_counter() - raw_started
        raw_published = queue_length(raw_app, raw_queue) - raw_before
    finally:
        bench.purge(raw_app, raw_queue)
    return {
        "runs": runs,
        "outcomes": len(outcomes),
        "refused": sum(isinstance(outcome, BaseException) for outcome in outcomes),
        "recorded": recorded,
        "published": published,
        "seconds": seconds,
        "per_second": runs / seconds,
        "apply_async": {
            "tasks": runs,
            "published": raw_published,
            "seconds": raw_seconds,
            "per_second": runs / raw_seconds,
        },
        "ratio": ratio(runs / seconds, runs / raw_seconds),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("procrastinate", "celery", "psycopg")}


def run(bench: Bench, plan: Plan) -> dict[str, Any]:
    if bench.name != "postgres_redis":
        return {"skipped": "the peers are measured on postgres_redis only"}
    with PeerSet(bench) as systems:
        peers = systems.peers
        results: dict[str, Any] = {
            "systems": {peer.name: peer.label for peer in peers},
            "producer_threads": plan.peer_producers,
            "versions": versions(),
        }
        results.update(end_to_end(peers, plan))
        results["submit_latency"] = latency = submit_latency(peers, plan)
        results["create_vs_defer_p50"] = ratio(
            latency["runqueue_create"]["p50_ms"]["median"],
            latency["procrastinate_defer"]["p50_ms"]["median"],
        )
        results["connections"] = {
            str(threads): connections(bench, plan.peer_connection_creates, threads)
            for threads in plan.peer_connection_threads
        }
        systems.stop_workers()  # nothing consumes what create_many and the loop publish
        results["create_many"] = create_many(bench, plan.peer_create_many)
    return results

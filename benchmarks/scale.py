"""Scenario 5: create and list_by_thread with a small and a large history in `runs`.

Each history lives in a fresh database of its own, seeded with one bulk statement
(generate_series on PostgreSQL, a recursive CTE on SQLite): finished runs, ROWS_PER_THREAD per
thread, with ANALYZE afterwards as autovacuum would. Creates go to a queue no worker reads
(purged afterwards); each applies `reject` on a seeded thread with nothing in flight, so
small and large measure the same path.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from benchmarks.harness import Bench, make_manager
from benchmarks.plan import Plan
from benchmarks.stats import latency_summary, over_repetitions, ratio
from tests.support import make_backend

ROWS_PER_THREAD = 20
LIST_ROUNDS = 10  # list_by_thread is cheap (about 1 ms): read each sampled thread this often

POSTGRES_SEED = [
    """INSERT INTO threads (thread_id, user_id, metadata, created_at, updated_at)
       SELECT 'seed-' || lpad(t::text, 7, '0'), NULL, '{}'::jsonb, now(), now()
       FROM generate_series(CAST(:first_thread AS integer), CAST(:last_thread AS integer)) AS t""",
    # Before the runs: the foreign-key check of each run row is planned from these statistics
    # (a plan made while `threads` was tiny scans it sequentially, once per run row).
    "ANALYZE threads",
    """INSERT INTO runs (run_id, thread_id, assistant_id, status, on_disconnect, metadata,
           kwargs, result, created_at, updated_at, started_at, ended_at, worker,
           dispatch_state, dispatched_at, attempt)
       SELECT gen_random_uuid()::text,
              'seed-' || lpad((g / CAST(:per_thread AS integer))::text, 7, '0'),
              'noop', 'success', 'continue', '{}'::jsonb, '{}'::jsonb, 'null'::jsonb,
              ts, ts, ts, ts, 'seed@host', 'queued', ts, 1
       FROM generate_series(CAST(:first_row AS integer), CAST(:last_row AS integer)) AS g,
            LATERAL (SELECT now() - interval '1 hour' + g * interval '1 millisecond') AS x(ts)""",
    "ANALYZE runs",
]

SQLITE_SEED = [
    """WITH RECURSIVE t(n) AS (SELECT :first_thread UNION ALL
                              SELECT n + 1 FROM t WHERE n < :last_thread)
       INSERT INTO threads (thread_id, user_id, metadata, created_at, updated_at)
       SELECT 'seed-' || printf('%07d', n), NULL, '{}', datetime('now'), datetime('now')
       FROM t""",
    """WITH RECURSIVE g(n) AS (SELECT :first_row UNION ALL
                              SELECT n + 1 FROM g WHERE n < :last_row)
       INSERT INTO runs (run_id, thread_id, assistant_id, status, on_disconnect, metadata,
           kwargs, result, created_at, updated_at, started_at, ended_at, worker,
           dispatch_state, dispatched_at, attempt)
       SELECT printf('00000000-0000-7000-8000-%012d', n),
              'seed-' || printf('%07d', n / :per_thread),
              'noop', 'success', 'continue', '{}', '{}', 'null',
              datetime('now', '-1 hour'), datetime('now', '-1 hour'),
              datetime('now', '-1 hour'), datetime('now', '-1 hour'),
              'seed@host', 'queued', datetime('now', '-1 hour'), 1
       FROM g""",
    "ANALYZE",
]


def seed(manager: Any, rows: int) -> float:
    """Add `rows` finished runs (and their threads) to an empty history; returns seconds."""
    statements = POSTGRES_SEED if manager.store.engine.dialect.name == "postgresql" else SQLITE_SEED
    params = {
        "first_row": 0,
        "last_row": rows - 1,
        "per_thread": ROWS_PER_THREAD,
        "first_thread": 0,
        "last_thread": (rows - 1) // ROWS_PER_THREAD,
    }
    started = time.perf_counter()
    with manager.store.transaction() as conn:
        for statement in statements:
            names = {name for name in params if f":{name}" in statement}
            conn.execute(text(statement), {name: params[name] for name in names})
    if manager.store.engine.dialect.name == "postgresql":
        # A history grown over months has been vacuumed (visibility map, hint bits); a
        # fresh bulk load has not, and autovacuum would start on it in the middle of the
        # measurement. Measure the steady state.
        with manager.store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM (ANALYZE) runs, threads")
            )
    return time.perf_counter() - started


def measure(manager: Any, thread_ids: list[str]) -> dict[str, Any]:
    """create_or_reject (reject) on seeded threads with nothing in flight, each new run
    cancelled untimed so the thread is free again next round; then list_by_thread."""
    creates, lists = [], []
    listed_rows = 0
    for thread_id in thread_ids:
        before = time.perf_counter()
        run = manager.create_or_reject(thread_id, "noop")
        creates.append(time.perf_counter() - before)
        manager.cancel(run.run_id)
    for _ in range(LIST_ROUNDS):
        for thread_id in thread_ids:
            before = time.perf_counter()
            listed_rows += len(manager.list_by_thread(thread_id))
            lists.append(time.perf_counter() - before)
    return {
        "create": latency_summary(creates),
        "list_by_thread": latency_summary(lists),
        "rows_per_list": listed_rows / len(lists),
    }


def _median_of(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    figure = over_repetitions([one[key]["p50_ms"] for one in rounds])
    return {"p50_ms": figure["median"], "p50_ms_by_round": figure["repetitions"], **figure}


def run(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Two fresh databases side by side, one seeded with the small history and one with the
    large, measured in alternating rounds so that the machine's drift hits both alike."""
    sizes = {"small": plan.scale_small, "large": plan.scale_large}
    backends, managers, seconds = {}, {}, {}

    def prepare(label: str) -> None:
        backends[label] = make_backend(bench.name, bench.path(f"scale-{label}"))
        settings = backends[label].settings
        managers[label] = make_manager(settings.with_overrides(queue=settings.queue + "-x"))
        seconds[label] = seed(managers[label], sizes[label])

    try:
        with ThreadPoolExecutor(len(sizes)) as pool:  # migrate and seed both at once
            list(pool.map(prepare, sizes))
        threads = min(plan.scale_samples, plan.scale_small // ROWS_PER_THREAD)
        thread_ids = [f"seed-{number:07d}" for number in range(threads)]
        for manager in managers.values():  # warm-up: connections, statement caches
            measure(manager, thread_ids[:3])
        rounds: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
        for index in range(plan.repetitions + 1):
            order = ("small", "large") if index % 2 == 0 else ("large", "small")
            for label in order:
                rounds[label].append(measure(managers[label], thread_ids))
    finally:
        for manager in managers.values():
            bench.purge_runs(manager)
        for backend in backends.values():
            backend.close()
    figures = {
        label: {
            "create": _median_of(rounds[label], "create"),
            "list_by_thread": _median_of(rounds[label], "list_by_thread"),
            "rows_per_list": rounds[label][-1]["rows_per_list"],
            "samples_per_round": len(thread_ids),
            "rounds": len(rounds[label]),
        }
        for label in sizes
    }
    return {
        "rows_small": sizes["small"],
        "rows_large": sizes["large"],
        "rows_per_thread": ROWS_PER_THREAD,
        "seed_seconds": seconds,
        **figures,
        "create_ratio_p50": ratio(
            figures["large"]["create"]["p50_ms"], figures["small"]["create"]["p50_ms"]
        ),
        "list_ratio_p50": ratio(
            figures["large"]["list_by_thread"]["p50_ms"],
            figures["small"]["list_by_thread"]["p50_ms"],
        ),
    }

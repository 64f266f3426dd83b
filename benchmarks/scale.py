"""Scenario 5: create and list_by_thread with a small and a large history in `runs`.

History is seeded with one bulk statement (generate_series on PostgreSQL, a recursive CTE on
SQLite): finished runs, ROWS_PER_THREAD per thread, with ANALYZE afterwards as autovacuum
would. Creates go to a queue no worker reads (purged afterwards); each create applies
`reject` on a seeded thread no earlier create touched, so small and large measure the same
path.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from benchmarks.harness import Bench, make_manager
from benchmarks.plan import Plan
from benchmarks.stats import latency_summary, ratio

ROWS_PER_THREAD = 20

POSTGRES_SEED = [
    """INSERT INTO threads (thread_id, user_id, metadata, created_at, updated_at)
       SELECT 'seed-' || lpad(t::text, 7, '0'), NULL, '{}'::jsonb, now(), now()
       FROM generate_series(CAST(:first_thread AS integer), CAST(:last_thread AS integer)) AS t""",
    """INSERT INTO runs (run_id, thread_id, assistant_id, status, on_disconnect, metadata,
           kwargs, result, created_at, updated_at, started_at, ended_at, worker,
           dispatch_state, dispatched_at, attempt)
       SELECT gen_random_uuid()::text,
              'seed-' || lpad((g / CAST(:per_thread AS integer))::text, 7, '0'),
              'noop', 'success', 'continue', '{}'::jsonb, '{}'::jsonb, 'null'::jsonb,
              ts, ts, ts, ts, 'seed@host', 'queued', ts, 1
       FROM generate_series(CAST(:first_row AS integer), CAST(:last_row AS integer)) AS g,
            LATERAL (SELECT now() - interval '1 hour' + g * interval '1 millisecond') AS x(ts)""",
    "ANALYZE threads",
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


def seed(bench: Bench, first_row: int, last_row: int) -> float:
    """Add finished runs first_row..last_row (and their threads); returns the seconds taken."""
    manager = bench.manager()
    statements = POSTGRES_SEED if manager.store.engine.dialect.name == "postgresql" else SQLITE_SEED
    params = {
        "first_row": first_row,
        "last_row": last_row,
        "per_thread": ROWS_PER_THREAD,
        "first_thread": first_row // ROWS_PER_THREAD,
        "last_thread": last_row // ROWS_PER_THREAD,
    }
    started = time.perf_counter()
    with manager.store.transaction() as conn:
        for statement in statements:
            names = {name for name in params if f":{name}" in statement}
            conn.execute(text(statement), {name: params[name] for name in names})
    return time.perf_counter() - started


def measure(bench: Bench, manager: Any, threads: range, samples: int) -> dict[str, Any]:
    """create_or_reject on untouched seeded threads, then list_by_thread on the same."""
    creates, lists = [], []
    listed_rows = 0
    for thread_number in threads[:samples]:
        thread_id = f"seed-{thread_number:07d}"
        before = time.perf_counter()
        manager.create_or_reject(thread_id, "noop")
        creates.append(time.perf_counter() - before)
    for index in range(samples * 2):
        thread_id = f"seed-{threads[index % samples]:07d}"
        before = time.perf_counter()
        listed_rows += len(manager.list_by_thread(thread_id))
        lists.append(time.perf_counter() - before)
    return {
        "create": latency_summary(creates),
        "list_by_thread": latency_summary(lists),
        "rows_per_list": listed_rows / len(lists),
    }


def run(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Small history first, then grow the same table to the large one and measure again."""
    settings = bench.settings.with_overrides(queue=bench.settings.queue + "-scale")
    manager = make_manager(settings)
    small, large = plan.scale_small, plan.scale_large
    threads_small = small // ROWS_PER_THREAD
    samples = min(plan.scale_samples, threads_small // 2)
    seconds_small = seed(bench, 0, small - 1)
    measure(bench, manager, range(threads_small - 3, threads_small), 3)  # warm-up
    small_figures = measure(bench, manager, range(0, threads_small), samples)
    seconds_large = seed(bench, small, large - 1)
    large_figures = measure(bench, manager, range(threads_small, 2 * threads_small), samples)
    bench.purge(manager.app, settings.queue)
    return {
        "rows_small": small,
        "rows_large": large,
        "rows_per_thread": ROWS_PER_THREAD,
        "seed_seconds": {"small": seconds_small, "large": seconds_large},
        "small": small_figures,
        "large": large_figures,
        "create_ratio_p50": ratio(
            large_figures["create"]["p50_ms"], small_figures["create"]["p50_ms"]
        ),
        "list_ratio_p50": ratio(
            large_figures["list_by_thread"]["p50_ms"], small_figures["list_by_thread"]["p50_ms"]
        ),
    }

"""The peers scenario in the printed table and in the targets: every ratio of runqueue to each
peer, and issue 14's bounds, reported met or missed, never asserted."""

from __future__ import annotations

from typing import Any

from benchmarks.stats import figure_at

# The peers runqueue is divided by, in the table's order.
PEERS = ("procrastinate", "celery_db_backend", "celery_raw_events_on", "celery_raw_events_off")
SHAPE_LABELS = {"serial": "serial", "threads": "{n} threads"}

Row = tuple[str, str, Any, Any, Any, str]  # scenario, metric, runqueue, peer, ratio, note
SCENARIO = "8 peers"


def _shape(peers: dict[str, Any], shape: str) -> str:
    return SHAPE_LABELS[shape].format(n=peers.get("producer_threads", "?"))


def rows(results: dict[str, Any]) -> list[Row]:
    peers = results.get("peers", {})
    if "e2e" not in peers:
        note = peers.get("skipped", "")
        return [(SCENARIO, "not measured", None, None, None, note)] if note else []
    table: list[Row] = []
    for shape, figures in peers["e2e"].items():
        runqueue = figures["runqueue"]
        for name in PEERS:
            peer = figures[name]
            noisy = " noisy" if runqueue["noisy"] or peer["noisy"] else ""
            table.append(
                (
                    SCENARIO,
                    f"e2e jobs/s {_shape(peers, shape)}, vs {peers['systems'][name]}",
                    runqueue["median"],
                    peer["median"],
                    peers["ratios"][shape][name],
                    f"n={runqueue['jobs_per_repetition']}/{peer['jobs_per_repetition']}{noisy}",
                )
            )
    latency = peers["submit_latency"]
    create = latency["runqueue_create"]
    for other, label in (("procrastinate_defer", "defer"), ("celery_apply_async", "apply_async")):
        for p in ("p50_ms", "p99_ms"):
            mine, theirs = create[p]["median"], latency[other][p]["median"]
            table.append(
                (
                    SCENARIO,
                    f"submit {p[:3]} ms, create() vs {label}",
                    mine,
                    theirs,
                    mine / theirs if theirs else None,
                    "",
                )
            )
    many = peers["create_many"]
    if "skipped" in many:
        metric = "create_many runs/s vs apply_async/s"
        table.append((SCENARIO, metric, None, None, None, many["skipped"]))
    else:
        table.append(
            (
                SCENARIO,
                "create_many runs/s vs apply_async/s",
                many["per_second"],
                many["apply_async"]["per_second"],
                many["ratio"],
                f"n={many['runs']}, recorded {many['recorded']}, published {many['published']}",
            )
        )
    for threads, counted in peers["connections"].items():
        table.append(
            (
                SCENARIO,
                f"new PG connections / 1,000 creates, {threads} threads",
                counted["per_1000_creates"],
                None,
                None,
                f"pool {counted['pool_size']}; pg sessions +{counted['pg_sessions_delta']}",
            )
        )
    return table


def targets(results: dict[str, Any]) -> list[tuple[str, float, str, float]]:
    """Issue 14's bounds: (label, value, sense, bound)."""
    checks = []
    for shape in ("serial", "threads"):
        checks += [
            (f"e2e {shape} / Procrastinate", ("ratios", shape, "procrastinate"), ">=", 1.0),
            (f"e2e {shape} / Celery DB backend", ("ratios", shape, "celery_db_backend"), ">=", 1.5),
            (f"e2e {shape} / raw events on", ("ratios", shape, "celery_raw_events_on"), ">=", 0.8),
        ]
    checks += [
        ("create p50 / defer p50", ("create_vs_defer_p50",), "<=", 1.0),
        ("create_many / apply_async", ("create_many", "ratio"), ">=", 1.0),
        ("new conns / 1k creates, 64 thr", ("connections", "64", "per_1000_creates"), "<=", 64),
    ]
    return [
        (label, figure_at(results, "peers", *path), sense, bound)
        for label, path, sense, bound in checks
    ]

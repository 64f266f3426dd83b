"""What the HTTP API benchmark measures (its plan) and how it reports it: the table, the
targets, the JSON's figures."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.api_servers import System
from benchmarks.stats import over_repetitions, percentile

SYSTEMS = ("runqueue", "reference")
CONCURRENCY = (1, 50, 200)
TARGET_RUNS_RATIO_AT_50 = 1.0  # runqueue's runs/s at 50 clients over the reference's
TARGET_P99_AT_200_MS = 250.0


# -- the plan, the processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rounds: int
    creates: dict[int, int]  # concurrency -> requests per round
    first_events: int  # streamed runs per round
    streams: int  # join streams held open at once
    hold_seconds: float  # how long they are held once all were answered


FULL = Plan(
    rounds=3, creates={1: 100, 50: 400, 200: 600}, first_events=20, streams=500, hold_seconds=10.0
)
QUICK = Plan(
    rounds=1, creates={1: 10, 50: 50, 200: 200}, first_events=3, streams=50, hold_seconds=1.0
)


# -- the report ------------------------------------------------------------------------------------


def metric_names(plan: Plan) -> list[tuple[str, str]]:
    """(key, label) of every figure reported for both systems, in the table's order."""
    names = []
    for clients in CONCURRENCY:
        label = f"POST runs, {clients:>3} client{'s' if clients > 1 else ''}"
        names += [
            (f"create_c{clients}_p50_ms", f"{label}: p50 ms"),
            (f"create_c{clients}_p99_ms", f"{label}: p99 ms"),
            (f"create_c{clients}_runs_per_s", f"{label}: runs/s"),
        ]
    names += [
        ("create_c50_server_cpu_ms_per_request", "server CPU ms per create (50 clients)"),
        ("create_c50_cpu_ms_per_run", "CPU ms per run, create to done (50 clients)"),
        ("stream_metadata_p50_ms", "POST runs/stream -> metadata: p50 ms"),
        ("stream_metadata_p99_ms", "POST runs/stream -> metadata: p99 ms"),
        ("stream_first_event_p50_ms", "POST runs/stream -> first event: p50 ms"),
        ("stream_first_event_p99_ms", "POST runs/stream -> first event: p99 ms"),
        ("streams_served", f"{plan.streams} join streams: served"),
        ("streams_open_at_end", f"{plan.streams} join streams: open after {plan.hold_seconds:g} s"),
        ("server_rss_start_mib", "server RSS MiB, after warm-up"),
        ("server_rss_before_streams_mib", "server RSS MiB, before the streams"),
        ("server_rss_streams_mib", f"server RSS MiB, {plan.streams} streams open"),
        ("server_kib_per_stream", "server RSS KiB per open stream"),
    ]
    return names


def _errors(phases: list[dict[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for phase in phases:
        total.update(phase["errors"])
    return dict(total)


def _per_run_ms(
    phases: list[dict[str, Any]], cpu_seconds: Callable[[dict[str, Any]], float]
) -> float:
    """The median over rounds of some CPU time, in ms per run created."""
    return percentile([cpu_seconds(p) * 1000 / len(p["latencies"]) for p in phases], 50)


def summarize(system: System) -> dict[str, Any]:
    """A system's figures (`metrics`, flat), a remark on some (`notes`), and what they were
    computed from (`details`)."""
    results, metrics, notes, details = system.results, {}, {}, {}
    for clients in CONCURRENCY:
        key, phases = f"create_c{clients}", results[f"create_c{clients}"]
        latencies = [latency for phase in phases for latency in phase["latencies"]]
        rates = over_repetitions([len(phase["latencies"]) / phase["seconds"] for phase in phases])
        metrics[f"{key}_p50_ms"] = percentile(latencies, 50) * 1000
        metrics[f"{key}_p99_ms"] = percentile(latencies, 99) * 1000
        metrics[f"{key}_runs_per_s"] = rates["median"]

        cpu_ms = {
            # the server's CPU while it answered the creates, per create
            "server_per_request": _per_run_ms(
                phases, lambda p: p["cores"]["server"] * p["seconds"]
            ),
            # from the first create to the last run's end: creating and executing
            "server_per_run": _per_run_ms(phases, lambda p: p["cpu_seconds"]["server"]),
            "worker_per_run": _per_run_ms(phases, lambda p: p["cpu_seconds"]["worker"]),
        }
        cores = {
            part: percentile([phase["cores"][part] for phase in phases], 50)
            for part in ("server", "worker", "client", "elsewhere")
        }
        details[key] = {
            "n": len(latencies),
            "errors": _errors(phases),
            "runs_per_s": rates,
            "cpu_ms": cpu_ms,
            "cores_while_creating": cores,
            "drain_seconds": [phase["drain_seconds"] for phase in phases],
        }
        metrics[f"{key}_server_cpu_ms_per_request"] = cpu_ms["server_per_request"]
        metrics[f"{key}_cpu_ms_per_run"] = cpu_ms["server_per_run"] + cpu_ms["worker_per_run"]
        notes[f"{key}_runs_per_s"] = " ".join(
            [f"errors {details[key]['errors']}"] * bool(details[key]["errors"])
            + ["noisy"] * rates["noisy"]
        )
    if system.worker_pid:
        worker = details["create_c50"]["cpu_ms"]["worker_per_run"]
        notes["create_c50_cpu_ms_per_run"] = f"worker {worker:.1f} of it; not PostgreSQL, Redis"
    phases = results["first_event"]
    for key, part in (("metadata", "metadata"), ("first_event", "first")):
        values = [value for phase in phases for value in phase[part]]
        metrics[f"stream_{key}_p50_ms"] = percentile(values, 50) * 1000
        metrics[f"stream_{key}_p99_ms"] = percentile(values, 99) * 1000
    names: Counter[str] = Counter()
    for phase in phases:
        names.update(phase["first_event_names"])
    details["first_event"] = {
        "n": sum(len(phase["first"]) for phase in phases),
        "errors": _errors(phases),
        "first_event_names": dict(names),
    }
    notes["stream_first_event_p50_ms"] = "/".join(names)
    if details["first_event"]["errors"]:
        notes["stream_first_event_p99_ms"] = f"errors {details['first_event']['errors']}"
    streams = details["streams"] = results["streams"]
    metrics["streams_served"] = streams["served"]
    metrics["streams_open_at_end"] = streams["open_at_end"]
    notes["streams_served"] = f"in {streams['seconds_to_serve']:.1f} s" + (
        f" errors {streams['errors']}" * bool(streams["errors"])
    )
    metrics["server_rss_start_mib"] = results["rss_start_kib"] / 1024
    metrics["server_rss_before_streams_mib"] = streams["rss_before_streams_kib"] / 1024
    metrics["server_rss_streams_mib"] = streams["rss_streams_kib"] / 1024
    metrics["server_kib_per_stream"] = (
        streams["rss_streams_kib"] - streams["rss_before_streams_kib"]
    ) / streams["requested"]
    if streams["worker_rss_kib"]:
        notes["server_rss_streams_mib"] = f"+ worker {streams['worker_rss_kib'] / 1024:.0f}"
    return {"metrics": metrics, "notes": notes, "details": details}


def targets(report: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = (report["systems"][name]["metrics"] for name in SYSTEMS)
    ratio = ours["create_c50_runs_per_s"] / theirs["create_c50_runs_per_s"]
    p99 = ours["create_c200_p99_ms"]
    rate_met, p99_met = ratio >= TARGET_RUNS_RATIO_AT_50, p99 < TARGET_P99_AT_200_MS
    rates = f"{ours['create_c50_runs_per_s']:.0f} vs {theirs['create_c50_runs_per_s']:.0f}"
    return {
        "runs_per_s_at_50_ratio": {
            "value": ratio,
            "met": rate_met,
            "text": f"runs/s at 50 clients, runqueue / reference: {ratio:.2f} ({rates}); "
            f"target >= {TARGET_RUNS_RATIO_AT_50:g}: {'met' if rate_met else 'MISSED'}",
        },
        "p99_at_200_ms": {
            "value": p99,
            "met": p99_met,
            "text": f"runqueue p99 at 200 clients: {p99:.0f} ms (reference "
            f"{theirs['create_c200_p99_ms']:.0f} ms); target < {TARGET_P99_AT_200_MS:g} ms: "
            f"{'met' if p99_met else 'MISSED'}",
        },
    }


def print_table(report: dict[str, Any], plan: Plan) -> None:
    systems = [report["systems"][name] for name in SYSTEMS]
    rows = metric_names(plan)
    width = max(len(label) for _key, label in rows)
    print(f"{'metric':{width}} | {'runqueue':>9} | {'reference':>9} | {'ratio':>6} | note")
    print(f"{'-' * width}-+-{'-' * 9}-+-{'-' * 9}-+-{'-' * 6}-+-----")
    for key, label in rows:
        ours, theirs = (system["metrics"][key] for system in systems)
        ratio = ours / theirs if theirs else math.nan
        note = "; ".join(
            f"{name}: {system['notes'][key]}"
            for name, system in zip(SYSTEMS, systems, strict=True)
            if system["notes"].get(key)
        )
        print(f"{label:{width}} | {ours:>9.1f} | {theirs:>9.1f} | {ratio:>6.2f} | {note}")
    print()
    for name, system in zip(SYSTEMS, systems, strict=True):
        cores = system["details"]["create_c50"]["cores_while_creating"]
        print(
            f"cores while {name} served 50 clients: "
            + ", ".join(f"{part} {value:.2f}" for part, value in cores.items())
        )
    print(
        f"load average: {report['load_average']['start']} at start, "
        f"{report['load_average']['end']} at end (2 cores)"
    )
    print()
    for target in report["targets"].values():
        print(target["text"])

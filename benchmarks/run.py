"""The one command: every scenario on each backend, runqueue and raw Celery side by side.

python -m benchmarks [--quick [--peers]] [--backend embedded|postgres_redis|all] [--out FILE]
python -m benchmarks delayed [--quick] [--runs N] [--rounds R]   (benchmarks/delayed.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import contention, footprint, latency, peer_report, peers, scale, throughput
from benchmarks.harness import Bench
from benchmarks.plan import SCENARIOS, Plan
from benchmarks.stats import figure_at
from tests.support import POSTGRES_ADMIN_URL, REDIS_HOST, REDIS_PORT

BACKENDS = ("embedded", "postgres_redis")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
DEFAULT_CHART = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-throughput.svg"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _scenario(
    results: dict[str, Any], name: str, wanted: set[str], body: Callable[[], Any]
) -> None:
    """Run one scenario; a failure is recorded in the results, and the others still run."""
    if name not in wanted:
        return
    log(f"  {name} ...")
    started = time.perf_counter()
    try:
        results[name] = body()
    except Exception as exc:
        results[name] = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
        log(f"  {name} FAILED: {exc}")
    results[name]["elapsed_seconds"] = round(time.perf_counter() - started, 1)


def run_backend(
    name: str,
    plan: Plan,
    workdir: Path,
    concurrency: int,
    wanted: set[str],
    stoppers: list[threading.Thread],
) -> dict[str, Any]:
    log(f"{name}: preparing a fresh database and broker queue")
    bench = Bench(name, workdir / name, concurrency)
    results: dict[str, Any] = {}
    try:
        if wanted & {"throughput", "create", "cancel", "contention"}:
            worker = bench.start_worker()
            if wanted & {"throughput", "create", "cancel"}:
                raw_worker = bench.start_worker(raw=True)
                _scenario(results, "throughput", wanted, lambda: throughput.run(bench, plan))
                _scenario(results, "create", wanted, lambda: latency.run_create(bench, plan))
                _scenario(
                    results,
                    "cancel",
                    wanted,
                    lambda: latency.run_cancel(bench, plan, worker, raw_worker),
                )
                bench.stop_worker(raw_worker)
            _scenario(results, "contention", wanted, lambda: contention.run(bench, plan))
            bench.stop_worker(worker)
        if wanted & {"writes", "memory"}:
            # A fresh worker that counts its SQL: the writes scenario, then memory from there.
            sql_dir = bench.path("sql")
            sql_dir.mkdir()
            counted = bench.start_worker(
                settings=bench.counted_settings,
                extra_env={"RUNQUEUE_BENCH_SQL_DIR": str(sql_dir)},
            )
            _scenario(results, "writes", wanted, lambda: footprint.writes(bench, plan, sql_dir))
            _scenario(results, "memory", wanted, lambda: footprint.memory(bench, plan, counted))
            bench.stop_worker(counted)
        _scenario(results, "scale", wanted, lambda: scale.run(bench, plan))
        # Last: it leaves create_many's runs queued, with no worker, until the backend closes.
        _scenario(results, "peers", wanted, lambda: peers.run(bench, plan))
    finally:
        stoppers.extend(bench.close())
    return results


# -- targets ----------------------------------------------------------------------------------


def targets(backend: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issues 5 and 14: the figure, the bound, met or not (never asserted)."""
    contention_rates = [
        figure_at(results, "contention", strategy, "median") for strategy in contention.STRATEGIES
    ]
    rows = [
        ("runs/s vs raw", figure_at(results, "throughput", "ratio"), ">=", 0.8),
        ("create->start p50 vs raw", figure_at(results, "create", "to_start_ratio_p50"), "<=", 1.5),
        (
            "cancel->dead p99 (ms)",
            figure_at(results, "cancel", "runqueue_to_dead_all", "p99_ms"),
            "<=",
            250,
        ),
        ("contention decisions/s (min)", min(contention_rates), ">=", 500),
        (
            "large/small history, create p50",
            figure_at(results, "scale", "create_ratio_p50"),
            "<=",
            1.2,
        ),
        ("large/small history, list p50", figure_at(results, "scale", "list_ratio_p50"), "<=", 1.2),
        ("worker RSS large/small", figure_at(results, "memory", "worker_ratio"), "<=", 1.1),
        ("creator RSS large/small", figure_at(results, "memory", "creator_ratio"), "<=", 1.1),
    ]
    if backend == "postgres_redis":  # issue 14: runqueue against its peers
        rows += peer_report.targets(results)
    checked = []
    for label, value, sense, bound in rows:
        met = None if math.isnan(value) else (value >= bound if sense == ">=" else value <= bound)
        checked.append(
            {
                "target": label,
                "value": value,
                "bound": f"{sense} {bound}",
                "met": met,
                "backend": backend,
            }
        )
    return checked


# -- the table ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _noisy(*figures: Any) -> str:
    return "noisy" if any(isinstance(f, dict) and f.get("noisy") for f in figures) else ""


def table_rows(backend: str, results: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []

    def add(
        scenario: str, metric: str, runqueue: Any, raw: Any, ratio: Any, note: str = ""
    ) -> None:
        rows.append([backend, scenario, metric, _fmt(runqueue), _fmt(raw), _fmt(ratio, 2), note])

    for name in SCENARIOS:
        if "error" in results.get(name, {}):
            add(name, "FAILED", None, None, None, results[name]["error"][:60])
    tp = results.get("throughput", {})
    if "ratio" in tp:
        add(
            "1 throughput",
            "runs/s",
            tp["runqueue"]["median"],
            tp["raw"]["median"],
            tp["ratio"],
            _noisy(tp["runqueue"], tp["raw"])
            + f" n={tp['runqueue']['runs_per_repetition']}/{tp['raw']['runs_per_repetition']}",
        )
    cr = results.get("create", {})
    if "runqueue" in cr:
        rq, raw = cr["runqueue"], cr["raw"]
        for key, label in (("create", "create() / publish"), ("to_start", "create->start")):
            for p in ("p50_ms", "p99_ms"):
                add(
                    "2 create",
                    f"{label} {p[:3]} ms",
                    rq[key][p]["median"],
                    raw[key][p]["median"],
                    rq[key][p]["median"] / raw[key][p]["median"],
                    _noisy(rq[key][p], raw[key][p]),
                )
        add(
            "2 create",
            "created_at->started_at p50 ms",
            rq["to_running_db"]["p50_ms"]["median"],
            None,
            None,
        )
    ca = results.get("cancel", {})
    if "runqueue" in ca:
        rq, raw = ca["runqueue_to_dead_all"], ca["raw_to_dead_all"]
        for p in ("p50_ms", "p99_ms"):
            add(
                "3 cancel",
                f"cancel->dead {p[:3]} ms",
                rq[p],
                raw[p],
                rq[p] / raw[p],
                f"n={rq['n']}",
            )
        add(
            "3 cancel",
            "cancel->interrupted p50 ms",
            ca["runqueue"]["to_status"]["p50_ms"]["median"],
            None,
            None,
        )
    co = results.get("contention", {})
    for strategy in contention.STRATEGIES:
        if strategy in co:
            figure = co[strategy]
            add(
                "4 contention",
                f"{strategy} decisions/s",
                figure["median"],
                None,
                None,
                ("correct" if figure["correct"] else "INCORRECT")
                + (" noisy" if figure["noisy"] else ""),
            )
    sc = results.get("scale", {})
    if "small" in sc:
        for key in ("create", "list_by_thread"):
            add(
                "5 scale",
                f"{key} p50 ms {sc['rows_large']:,} vs {sc['rows_small']:,}",
                sc["large"][key]["p50_ms"],
                sc["small"][key]["p50_ms"],
                sc["large"][key]["p50_ms"] / sc["small"][key]["p50_ms"],
                "runqueue large | small",
            )
    wr = results.get("writes", {})
    if "worker" in wr:
        creator, worker = wr["creator"]["create"], wr["worker"]
        add(
            "6 writes",
            "statements/run (create + worker)",
            creator.get("statements", 0) + worker.get("statements", 0),
            None,
            None,
            f"create {creator.get('statements', 0)}, worker {worker.get('statements', 0)}",
        )
        add(
            "6 writes",
            "round trips/run (create + worker)",
            creator.get("round_trips", 0) + worker.get("round_trips", 0),
            None,
            None,
            f"create {creator.get('round_trips', 0)}, worker {worker.get('round_trips', 0)}",
        )
        add(
            "6 writes",
            "transactions/run (create + worker)",
            creator.get("transactions", 0) + worker.get("transactions", 0),
            None,
            None,
            f"create {creator.get('transactions', 0)}, worker {worker.get('transactions', 0)}",
        )
    me = results.get("memory", {})
    if "worker" in me:
        small, large = str(me["runs_small"]), str(me["runs_large"])
        add(
            "7 memory",
            f"worker peak RSS MiB {large} vs {small} runs",
            me["worker"][large]["peak_total_rss_kib"] / 1024,
            me["worker"][small]["peak_total_rss_kib"] / 1024,
            me["worker_ratio"],
            "large | small",
        )
        if me["creator"].get(large) and me["creator"].get(small):
            add(
                "7 memory",
                f"creator peak RSS MiB {large} vs {small} runs",
                me["creator"][large]["peak_kib"] / 1024,
                me["creator"][small]["peak_kib"] / 1024,
                me["creator_ratio"],
                "large | small",
            )
    for row in peer_report.rows(results):
        add(*row)
    return rows


def render(rows: list[list[str]]) -> str:
    header = ["backend", "scenario", "metric", "runqueue", "raw celery", "ratio", "note"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * width for width in widths))
    for row in rows:
        lines.append(
            " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


# -- the machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import celery
    import kombu
    import psycopg
    import redis
    import sqlalchemy

    def command(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
        "redis_py": redis.__version__,
        "sqlite": sqlite3.sqlite_version,
        "git_commit": command(
            "git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"
        ),
    }
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        info["redis"] = redis.Redis(REDIS_HOST, REDIS_PORT).info("server")["redis_version"]
    except Exception as exc:  # the embedded backend needs neither
        info["services"] = f"unreachable: {exc}"
    return info


def write_chart(report: dict[str, Any], path: Path) -> None:
    """The throughput chart of the peers; a failure is logged, the JSON is already written."""
    from benchmarks import chart

    try:
        log(f"chart: {chart.draw(report, path)}")
    except Exception as exc:
        log(f"chart not written: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["delayed"]:  # a benchmark of its own, with its own options
        from benchmarks import delayed

        return delayed.main(arguments[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test under 60 s")
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--concurrency", type=int, default=os.cpu_count() or 2, help="prefork pool size"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument(
        "--memory-runs", type=int, default=None, help="runs before the second memory reading"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and files here")
    parser.add_argument(
        "--peers", action="store_true", help="quick mode: measure the peers too (full: always)"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help=f"throughput chart (SVG) to write; full mode: {DEFAULT_CHART.name} in docs/",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan.full()
    if args.memory_runs:
        plan = dataclasses.replace(
            plan, memory_large=args.memory_runs, memory_large_embedded=args.memory_runs
        )
    wanted = set(args.scenarios.split(","))
    unknown = wanted - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    skip_peers = args.quick and not args.peers and "peers" in wanted
    if skip_peers:
        wanted.discard("peers")
    chart_path = args.chart or (None if args.quick else DEFAULT_CHART)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="runqueue-bench-"))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "concurrency": args.concurrency,
        "plan": plan.__dict__,
        "machine": machine(),
        "backends": {},
        "targets": [],
    }
    stoppers: list[threading.Thread] = []
    try:
        for backend in backends:
            results = run_backend(backend, plan, workdir, args.concurrency, wanted, stoppers)
            if skip_peers:
                results["peers"] = {"skipped": "quick mode without --peers"}
            report["backends"][backend] = results
            report["targets"].extend(targets(backend, results))
    finally:
        for stopper in stoppers:  # workers still in their warm shutdown
            stopper.join()
        report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str))
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if chart_path is not None:
        write_chart(report, chart_path)
    rows = [row for backend in backends for row in table_rows(backend, report["backends"][backend])]
    print(render(rows))
    print()
    for target in report["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        print(
            f"{target['backend']:15} {target['target']:34} "
            f"{_fmt(target['value'], 2):>10} {target['bound']:>8}  {verdict}"
        )
    print(f"\n{report['mode']} run, {report['elapsed_seconds']} s; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

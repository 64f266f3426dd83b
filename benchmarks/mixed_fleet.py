"""A mixed fleet: two workers serving disjoint assistants on one broker, runs alternating
between the two assistants, one at a time (an idle worker waits for each). Figures: create
-> the assistant's first line (p50, p99, max), runs discarded as unregistered, runs the
relay had to publish again; beside raw Celery routed as its docs say (a queue per task,
each worker on its own queue). Prints a table and writes JSON; never asserts a time.

    python -m benchmarks.mixed_fleet                 # both backends, 200 runs each
    python -m benchmarks.mixed_fleet --quick         # smoke test (tests/integration)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks import mixed_fleet_apps
from benchmarks.harness import StampWatcher
from benchmarks.stats import latency_summary
from runqueue import RunStatus, SyncRunManager, assistant, create_app
from runqueue.store.models import Run
from tests.support import Backend, WorkerProcess, make_backend

BACKENDS = ("embedded", "postgres_redis")
APPS = "benchmarks.mixed_fleet_apps"
TARGET_P99_MS = 1000.0  # every run starts within 1 s of create, p99, with a worker idle
PAUSE = 0.02  # between creates: one run at a time, so each meets an idle worker


def _workers(backend: Backend, workdir: Path, apps: tuple[str, str]) -> list[WorkerProcess]:
    started = []
    for app in apps:
        settings = backend.settings.with_overrides(app=f"{APPS}:{app}", imports="")
        started.append(WorkerProcess(settings, workdir / f"{app}.log", name=app).start())
    return started


def _runqueue_side(backend: Backend, workdir: Path, runs: int) -> dict[str, Any]:
    app = create_app(backend.settings, name=f"mixed-{uuid.uuid4().hex[:6]}")
    for name in mixed_fleet_apps.ASSISTANTS:
        assistant(app, name)(mixed_fleet_apps.run_body)
    manager = SyncRunManager(app)
    watcher = StampWatcher(workdir / "runqueue-stamps")
    workers = _workers(backend, workdir, ("tools", "drafts"))
    try:
        latencies, created = [], []
        for index in range(runs):
            name = mixed_fleet_apps.ASSISTANTS[index % 2]
            before = time.time()
            run = manager.create(
                f"mixed-{index}-{uuid.uuid4().hex[:6]}", name, kwargs={"path": str(watcher.path)}
            )
            started, _pid = watcher.wait(run.run_id, timeout=60)
            latencies.append(started - before)
            created.append(run.run_id)
            time.sleep(PAUSE)
        done = [manager.join(run_id, timeout=60) for run_id in created]
        logs = "".join(worker.log() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
    with manager.store.transaction() as conn:
        republished = conn.execute(
            select(func.count()).where(Run.run_id.in_(created), Run.publish_count > 0)
        ).scalar()
    return {
        **latency_summary(latencies),
        "runs": runs,
        "success": sum(run.status is RunStatus.success for run in done),
        "unregistered": logs.count("unregistered task"),
        "republished": republished,
    }


def _raw_side(backend: Backend, workdir: Path, runs: int) -> dict[str, Any]:
    settings = backend.settings
    sender = mixed_fleet_apps.raw_app(settings, *mixed_fleet_apps.ASSISTANTS)
    watcher = StampWatcher(workdir / "raw-stamps")
    workers = _workers(backend, workdir, ("raw_tools", "raw_drafts"))
    try:
        latencies = []
        for index in range(runs):
            before = time.time()
            result = sender.send_task(
                mixed_fleet_apps.ASSISTANTS[index % 2], args=[str(watcher.path)]
            )
            started, _pid = watcher.wait(result.id, timeout=60)
            latencies.append(started - before)
            time.sleep(PAUSE)
        logs = "".join(worker.log() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
    return {
        **latency_summary(latencies),
        "runs": runs,
        "success": len(latencies),
        "unregistered": logs.count("unregistered task"),
    }


def run_backend(name: str, workdir: Path, runs: int) -> dict[str, Any]:
    backend = make_backend(name, workdir / name, app=f"{APPS}:tools", imports="")
    try:
        return {
            "runqueue": _runqueue_side(backend, workdir / name, runs),
            "raw_celery": _raw_side(backend, workdir / name, runs),
        }
    except Exception as exc:  # reported in the JSON and the table, never a half table
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mixed_fleet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="40 runs: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mixed_fleet.json"))
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    runs = 40 if args.quick else 200
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "backends": {}}
    with tempfile.TemporaryDirectory(prefix="runqueue-mixed-bench-") as workdir:
        for name in backends:
            report["backends"][name] = run_backend(name, Path(workdir), runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"{'backend':15} | {'side':10} | {'runs':>5} | {'success':>7} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'max ms':>7} | {'unregistered':>12} | {'republished':>11} | verdict"
    )
    for name in backends:
        results = report["backends"][name]
        if "error" in results:
            print(f"{name:15} | error: {results['error']}")
            continue
        for side, figures in results.items():
            verdict = ""
            if side == "runqueue":
                met = figures["p99_ms"] <= TARGET_P99_MS and figures["success"] == figures["runs"]
                verdict = f"target p99 <= {TARGET_P99_MS:g} ms: {'met' if met else 'MISSED'}"
            print(
                f"{name:15} | {side:10} | {figures['runs']:>5} | {figures['success']:>7} | "
                f"{figures['p50_ms']:>7.1f} | {figures['p99_ms']:>7.1f} | "
                f"{figures['max_ms']:>7.1f} | {figures['unregistered']:>12} | "
                f"{figures.get('republished', '-'):>11} | {verdict}"
            )
    print(f"\n{report['mode']} run; JSON in {args.out}")
    return 1 if any("error" in results for results in report["backends"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

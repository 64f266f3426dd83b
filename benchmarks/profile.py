"""Profile runqueue's hot path with py-spy: the creating process (create()) and the worker's
pool children (claim, run, finish), during a burst of no-op runs.

    python -m benchmarks.profile [--backend postgres_redis] [--runs 800] [--out-dir DIR]

Prints, for each side, where the wall time of the busy threads goes: inclusive time of the
runqueue functions, and self time by library (psycopg waiting on the server, SQLAlchemy
compiling and processing, kombu publishing...). Raw collapsed stacks stay in DIR.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.harness import Bench, wait_for

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

LIBRARIES = (
    ("psycopg", "psycopg (server round trips)"),
    ("sqlite3", "sqlite3"),
    ("sqlalchemy/sql/compiler", "SQLAlchemy compile"),
    ("sqlalchemy/engine/default", "SQLAlchemy execution context"),
    ("sqlalchemy/pool", "SQLAlchemy pool (checkout, pre-ping)"),
    ("sqlalchemy", "SQLAlchemy other"),
    ("kombu", "kombu (publish / consume)"),
    ("redis", "redis-py"),
    ("celery", "celery"),
    ("billiard", "billiard"),
    ("runqueue", "runqueue own code"),
    ("json", "json"),
    ("uuid", "uuid"),
)


def record(pid: int, path: Path, *, subprocesses: bool) -> subprocess.Popen[bytes]:
    argv = [PY_SPY, "record", "--pid", str(pid), "--format", "raw", "-o", str(path), "-r", "200"]
    if subprocesses:
        argv.append("--subprocesses")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(recorder: subprocess.Popen[bytes]) -> None:
    recorder.send_signal(signal.SIGINT)
    try:
        recorder.wait(30)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait()


def summarize(path: Path, keep: tuple[str, ...], top: int = 22) -> str:
    """Inclusive share of runqueue functions and self share by library, of busy samples."""
    inclusive: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any(marker in stack for marker in keep):
            continue  # idle threads: consumer loops, heartbeats, the maintenance loop
        count = int(count_text)
        total += count
        seen = set()
        for frame in frames:
            if "runqueue/" in frame and frame not in seen:
                seen.add(frame)
                inclusive[frame] += count
        leaf = frames[-1]
        label = next((name for marker, name in LIBRARIES if marker in leaf), "other (python)")
        by_library[label] += count
    if not total:
        return "  no samples"
    lines = [f"  {total} busy samples"]
    lines.append("  inclusive, runqueue functions:")
    for frame, count in inclusive.most_common(top):
        lines.append(f"    {100 * count / total:5.1f}%  {frame}")
    lines.append("  self time by library:")
    for label, count in by_library.most_common():
        lines.append(f"    {100 * count / total:5.1f}%  {label}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--backend", default="postgres_redis")
    parser.add_argument("--runs", type=int, default=800)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="runqueue-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.backend, out / "bench", os.cpu_count() or 2)
    try:
        worker = bench.start_worker()
        manager = bench.manager()
        for index in range(20):  # warm-up
            manager.create(f"warm-{index}", "noop")
        wait_for(lambda: bench.final_count() >= 20, 60, 0.05, "warm-up")
        creator_trace, worker_trace = out / "creator.txt", out / "worker.txt"
        recorders = [
            record(os.getpid(), creator_trace, subprocesses=False),
            record(worker.pid, worker_trace, subprocesses=True),
        ]
        time.sleep(1.0)  # py-spy attaches
        started = time.perf_counter()
        for index in range(args.runs):
            manager.create(f"profile-{index}", "noop")
        created = time.perf_counter()
        wait_for(lambda: bench.final_count() >= 20 + args.runs, 600, 0.05, "profiled runs")
        finished = time.perf_counter()
        for recorder in recorders:
            stop(recorder)
    finally:
        for stopper in bench.close():
            stopper.join()
    print(
        f"{args.runs} runs: created in {created - started:.1f} s, all final after "
        f"{finished - started:.1f} s ({args.runs / (finished - started):.0f} runs/s)"
    )
    print(f"creator (create() loop), {creator_trace}:")
    print(summarize(creator_trace, keep=("runqueue/registry/",)))
    print(f"worker pool children (task execution), {worker_trace}:")
    # The worker's rooms (task, attempt, heartbeat...) and a graph's execution, as the one
    # execution.py they replaced matched.
    keep = ("runqueue/worker/", "runqueue/langgraph/execution.py", "trace.py")
    print(summarize(worker_trace, keep=keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())

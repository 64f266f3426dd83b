"""The two servers of the HTTP API benchmark (runqueue serve with its worker, and langgraph
dev), and what the benchmark reads of their processes: RSS and CPU time from /proc.

The harness (runqueue, Celery, SQLAlchemy: about 40 MiB) is imported inside the functions
that start runqueue, so that the reference's RSS is its own."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

APP = "benchmarks.api_app:app"
WORKER_CONCURRENCY = 2  # runqueue's pool children, one per core
REFERENCE_JOBS = 10  # langgraph dev --n-jobs-per-worker, as the conformance tests run it
# The shipped defaults, not the tests' quick ones: with republish_after=5 s, every run of a
# backlog older than that would be published again.
# The load generator is one user (keys off): the per-user bound on runs in flight, which
# keeps one user from queueing ahead of the others, would refuse most of its requests.
RUNQUEUE_SETTINGS = dict(
    heartbeat_interval=10.0,
    lease_seconds=30.0,
    maintenance_interval=2.0,
    republish_after=30.0,
    api_max_runs_in_flight_per_user=1_000_000,
    # With keys off every simulated user is the one anonymous user, who holds all the
    # phase's streams at once (500): the per-user bound would refuse all but 20.
    api_max_streams_per_user=100_000,
)


def process_tree(pid: int) -> set[int]:
    """A process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, of in parents.items() if of == parent]
        tree.update(children)
        frontier += children
    return tree


def tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and its descendants, in KiB (pages shared after a fork count once
    per process, as `ps` counts them)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def tree_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its living descendants."""
    ticks = 0
    for member in process_tree(pid) if pid else ():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class System:
    """One server under test: where it answers, its processes, how to read its backlog."""

    name: str
    url: str
    pid: int
    backlog: Callable[[], int]  # runs pending or running
    worker_pid: int | None = None  # runqueue's worker: outside the server, reported apart
    results: dict[str, Any] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: server, worker, this (client) process, the whole machine."""
        own = os.times()
        return {
            "at": time.perf_counter(),
            "server": tree_cpu_seconds(self.pid),
            "worker": tree_cpu_seconds(self.worker_pid),
            "client": own.user + own.system,
            "machine": machine_busy_seconds(),
        }


def cores_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Cores used between two readings; `elsewhere`: by every other process (PostgreSQL and
    Redis, but also whatever else this machine runs)."""
    seconds = after["at"] - before["at"]
    used = {key: (after[key] - before[key]) / seconds for key in ("server", "worker", "client")}
    machine = (after["machine"] - before["machine"]) / seconds
    return used | {"elsewhere": max(0.0, machine - sum(used.values()))}


def start_runqueue(workdir: Path, stack: ExitStack) -> System:
    """A database, a prefork worker and `runqueue serve` (API keys off: loopback only)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from tests.api_support import api_server
    from tests.support import WorkerProcess, make_backend

    backend = make_backend("postgres_redis", workdir / "runqueue", app=APP, **RUNQUEUE_SETTINGS)
    stack.callback(backend.close)
    log = workdir / "runqueue-worker.log"
    worker = WorkerProcess(backend.settings, log, concurrency=WORKER_CONCURRENCY).start()
    stack.callback(worker.stop)
    server = api_server(
        backend.settings, workdir / "runqueue-api.log", extra_env={"RUNQUEUE_API_AUTH": "off"}
    ).start()
    stack.callback(server.stop)
    url = make_url(backend.settings.database_url).set(drivername="postgresql")
    db = stack.enter_context(
        psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    )

    def backlog() -> int:
        query = "SELECT count(*) FROM runs WHERE status IN ('pending', 'running')"
        return db.execute(query).fetchone()[0]

    return System("runqueue", server.url, server.pid, backlog, worker.pid)


def start_reference(workdir: Path, stack: ExitStack) -> System:
    """`langgraph dev` with the same graphs, from a folder of its own."""
    from tests.api_support import ServerProcess, free_port
    from tests.support import REPO_ROOT, checkout_path

    folder = workdir / "reference"
    folder.mkdir()
    graphs = {
        "noop": f"{REPO_ROOT}/benchmarks/api_noop.py:noop",
        "agent": f"{REPO_ROOT}/tests/api_graphs.py:agent",
    }
    (folder / "langgraph.json").write_text(json.dumps({"dependencies": ["."], "graphs": graphs}))
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "langgraph"),
        "dev",
        "--no-browser",
        "--no-reload",
        "--port",
        str(port),
        "--n-jobs-per-worker",
        str(REFERENCE_JOBS),
    ]
    env = os.environ | checkout_path()
    env |= {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1"}
    server = ServerProcess(argv, env, workdir / "reference.log", port, folder).start(timeout=120)
    stack.callback(server.stop, timeout=3.0)  # its cancelled silent runs' threads still sleep

    def backlog() -> int:
        answer = httpx.get(f"{server.url}/metrics", params={"format": "json"}, timeout=30)
        queue = answer.raise_for_status().json()["queue"]
        return queue["n_pending"] + queue["n_running"]

    return System("reference", server.url, server.pid, backlog)

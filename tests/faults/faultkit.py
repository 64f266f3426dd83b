"""Private service instances and measurements for the fault tests.

Outage tests stop and restart services, so they get PRIVATE redis-server and PostgreSQL
instances on free ports; the shared ones on 6379 and 5432 are never touched. Every process
started here is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from runqueue import Settings, SyncRunManager, create_app
from tests.faults.fault_app import register_fault_assistants
from tests.support import Backend, WorkerProcess, create_database, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
FAULT_APP = "tests.faults.fault_app:app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class PrivateRedis:
    """A redis-server that keeps nothing on disk: a restart loses every queued message."""

    def __init__(self, log_path: Path, password: str | None = None):
        self.port = free_port()
        self.log_path, self.password = log_path, password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port), timeout=10, message="private redis up")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: nothing is saved anyway
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A throwaway PostgreSQL 15 cluster (trust auth), run as the postgres user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="runqueue-faults-pg-"))
        shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self._as_postgres(
            PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )

    def _as_postgres(self, *argv: object) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            prefix + [str(a) for a in argv], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        argv = [PG_BIN / "pg_ctl", "-D", self.data, "-w", "-m", "fast", "-o", options]
        self._as_postgres(*argv, "-l", self.root / "log", action)

    def start(self) -> PrivatePostgres:
        self._ctl("start")
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop")

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        return create_database(self.admin_url(), prefix="runqueue_fault")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def fault_backend(tmp_path: Path, database_url: str, broker_url: str, **overrides: Any) -> Backend:
    """A migrated backend with short leases: heartbeat 1 s, lease 4 s, maintenance 0.5 s."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = dict(
        data_dir=tmp_path / f"data-{suffix}",
        queue=f"runqueue-fault-{suffix}",
        database_url=database_url,
        broker_url=broker_url,
        app=FAULT_APP,
        heartbeat_interval=1.0,
        lease_seconds=4.0,
        maintenance_interval=0.5,
        republish_after=30.0,
        status_write_timeout=60.0,
    )
    values.update(overrides)
    backend = Backend("faults", Settings(**values))
    backend.migrate()
    return backend


def manager_for(settings: Settings) -> SyncRunManager:
    app = create_app(settings, name=f"faults-{uuid.uuid4().hex[:6]}")
    register_fault_assistants(app)
    return SyncRunManager(app)


def start_workers(settings: Settings, log_dir: Path, count: int = 1, **options: Any) -> list:
    """Start `count` workers at once (in parallel: each takes seconds to be ready)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = [
        WorkerProcess(
            settings,
            log_dir / f"worker-{uuid.uuid4().hex[:6]}.log",
            **options,
        )
        for _ in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda w: w.start(), workers))
    return workers


def kill_process_tree(worker: WorkerProcess) -> None:
    """SIGKILL the worker's main process and its pool children at once (a host crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)


def figure(scenario: str, **fields: Any) -> str:
    """The one line a fault test prints; docs/reliability.md collects them."""
    parts = [f"scenario={scenario}"]
    for name, value in fields.items():
        parts.append(f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}")
    line = "FIGURE " + " ".join(parts)
    print(line, flush=True)
    path = os.environ.get("RUNQUEUE_FIGURES")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    return line


def wait_for(predicate, timeout: float, message: str):  # noqa: ANN001, ANN201
    return wait_until(predicate, timeout=timeout, interval=0.05, message=message)


def monotonic() -> float:
    return time.monotonic()

"""Helpers the tests share: backends on the real services, worker processes, journals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from runqueue import Settings, SyncRunManager, create_app
from workers.assistants import register

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "RUNQUEUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

# The commands docker-compose.yml runs; tests start the very same ones as real processes.
MIGRATE_COMMAND = ["runqueue", "migrate"]
WORKER_COMMAND = ["runqueue", "worker"]
FLOWER_COMMAND = ["celery", "-A", "workers.app", "flower"]


def as_process(command: list[str]) -> list[str]:
    """Run a console-script command with this interpreter (the same entry point)."""
    return [sys.executable, "-m", command[0], *command[1:]]


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process needs to see the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNQUEUE_")}
    env.update(settings.environment())
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Backend:
    """One database + broker pair, isolated from every other test session."""

    name: str
    settings: Settings
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def manager(self, **overrides: Any) -> SyncRunManager:
        settings = self.settings.with_overrides(**overrides) if overrides else self.settings
        app = create_app(settings, name=f"test-{self.name}-{uuid.uuid4().hex[:6]}")
        register(app)
        return SyncRunManager(app)

    def migrate(self) -> None:
        """Build the schema with the same command docker-compose's migrate service runs."""
        subprocess.run(
            as_process(MIGRATE_COMMAND),
            env=settings_env(self.settings),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


def make_backend(name: str, tmp_path: Path, **overrides: Any) -> Backend:
    suffix = uuid.uuid4().hex[:10]
    base = dict(
        data_dir=tmp_path / f"data-{suffix}",
        queue=f"runqueue-test-{suffix}",
        heartbeat_interval=1.0,
        lease_seconds=5.0,
        maintenance_interval=0.5,
        # A queued run whose message never reached a pool child (seen once: delivered while
        # the thread's interrupted run's child was exiting) is published again this soon,
        # well inside the tests' 30 s joins; production waits 30 s.
        republish_after=5.0,
    )
    base.update(overrides)
    if name == "embedded":
        backend = Backend(name, Settings(**base))
    elif name == "postgres_redis":
        database = f"runqueue_test_{suffix}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        redis_db = int(suffix, 16) % 16
        backend = Backend(
            name,
            Settings(
                database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
                **base,
            ),
        )

        def drop() -> None:
            from runqueue.store.database import dispose_engines

            dispose_engines()
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

        backend.cleanups.append(drop)
    else:
        raise ValueError(name)
    backend.migrate()
    return backend


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return children


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class WorkerProcess:
    """A real `runqueue worker` process (prefork by default), stopped by pid, always."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        extra_env: dict[str, str] | None = None,
    ):
        self.settings, self.log_path = settings, log_path
        self.concurrency, self.pool = concurrency, pool
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        env = settings_env(self.settings)
        env.update(self.extra_env)
        hostname = f"w{uuid.uuid4().hex[:8]}@%h"
        self._log = self.log_path.open("ab")
        self._offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [
                *as_process(WORKER_COMMAND),
                f"--concurrency={self.concurrency}",
                f"--pool={self.pool}",
                f"--hostname={hostname}",
                "--loglevel=INFO",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pool_pids(self) -> list[int]:
        return child_pids(self.pid)

    def log(self) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the main process only (a real crash: children are orphaned or die)."""
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._log.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def execution_intervals(journal: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """run_id -> (first, last) time the assistant itself recorded."""
    intervals: dict[str, list[float]] = {}
    for line in journal:
        times = intervals.setdefault(line["run_id"], [line["time"], line["time"]])
        times[0], times[1] = min(times[0], line["time"]), max(times[1], line["time"])
    return {run_id: (t[0], t[1]) for run_id, t in intervals.items()}

"""One backend under test: its database and broker, the workers, and the two apps that talk
to it (runqueue's manager and the raw-Celery baseline). Every process started here is
stopped by pid."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import func, select

from benchmarks.tasks import create_raw_app, register_bench_assistants
from runqueue import RunStatus, Settings, SyncRunManager, create_app
from runqueue.celery.routing import run_queues
from runqueue.store.models import Run
from runqueue.worker.task import RunTask
from tests.support import Backend, WorkerProcess, child_pids, make_backend, pid_alive
from workers.assistants import register_with_journal

FINAL = [status.value for status in RunStatus if status.is_final]
RUNQUEUE_WORKER_APP = "benchmarks.worker_app:app"
RAW_WORKER_APP = "benchmarks.baseline_app:app"

# Production defaults (the test helpers use shorter ones): a no-op run never renews its lease.
BENCH_SETTINGS = dict(heartbeat_interval=10.0, lease_seconds=30.0, maintenance_interval=2.0)


def make_manager(settings: Settings) -> SyncRunManager:
    """A manager whose app knows the stock and the benchmark assistants."""
    app = create_app(settings, name=f"bench-{uuid.uuid4().hex[:6]}")
    register_with_journal(app)
    register_bench_assistants(app)
    return SyncRunManager(app)


@dataclass
class Bench:
    """The services and processes of one backend, for one benchmark invocation."""

    name: str
    workdir: Path
    concurrency: int
    backend: Backend = field(init=False)
    workers: list[WorkerProcess] = field(default_factory=list)
    _raw_app: Celery | None = None
    _manager: SyncRunManager | None = None
    _stoppers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = make_backend(self.name, self.workdir, **BENCH_SETTINGS)

    @property
    def settings(self) -> Settings:
        return self.backend.settings

    @property
    def raw_settings(self) -> Settings:
        return self.settings.with_overrides(queue=self.settings.queue + "-raw")

    @property
    def counted_settings(self) -> Settings:
        """A queue of its own for the SQL-counting worker, so no other worker (one still
        shutting down) takes its runs."""
        return self.settings.with_overrides(queue=self.settings.queue + "-counted")

    def manager(self) -> SyncRunManager:
        if self._manager is None:
            self._manager = make_manager(self.settings)
        return self._manager

    def raw_app(self) -> Celery:
        if self._raw_app is None:
            self._raw_app = create_raw_app(self.raw_settings)
        return self._raw_app

    def path(self, label: str) -> Path:
        """A fresh file name under this backend's directory."""
        return self.workdir / f"{label}-{uuid.uuid4().hex[:8]}"

    def start_worker(
        self,
        *,
        raw: bool = False,
        settings: Settings | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        """A prefork worker started by `runqueue worker`: runqueue's app, or the baseline's
        (same command line, same pool, same concurrency, same broker)."""
        env = {"RUNQUEUE_APP": RAW_WORKER_APP if raw else RUNQUEUE_WORKER_APP}
        env.update(extra_env or {})
        settings = settings or (self.raw_settings if raw else self.settings)
        log = self.path("raw-worker" if raw else "worker").with_suffix(".log")
        worker = WorkerProcess(settings, log, concurrency=self.concurrency, extra_env=env)
        self.workers.append(worker)
        worker.start(timeout=90)
        wait_for_pool(worker, self.concurrency)
        return worker

    def stop_worker(self, worker: WorkerProcess) -> None:
        """Stop it in the background: a worker's warm shutdown takes seconds (about 6 s on
        the filesystem broker), and the next scenario need not wait for it."""
        if worker in self.workers:
            self.workers.remove(worker)
        stopper = threading.Thread(target=worker.stop, name=f"stop-{worker.pid}")
        stopper.start()
        self._stoppers.append(stopper)

    def final_count(self) -> int:
        with self.manager().store.transaction() as conn:
            return conn.execute(
                select(func.count()).select_from(Run).where(Run.status.in_(FINAL))
            ).scalar_one()

    def status_counts(self, thread_prefix: str | None = None) -> dict[str, int]:
        query = select(Run.status, func.count()).group_by(Run.status)
        if thread_prefix is not None:
            query = query.where(Run.thread_id.startswith(thread_prefix))
        with self.manager().store.transaction() as conn:
            return {status: count for status, count in conn.execute(query)}

    def purge(self, app: Celery, queue: str) -> None:
        """Drop messages nobody will consume (runs created with no worker listening)."""
        with contextlib.suppress(Exception), app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)

    def purge_runs(self, manager: SyncRunManager) -> None:
        """Drop the runs' messages nobody will consume: each assistant's queue."""
        names = [name for name, task in manager.app.tasks.items() if isinstance(task, RunTask)]
        for queue in run_queues(manager.runtime, names):
            self.purge(manager.app, queue)

    def close(self) -> list[threading.Thread]:
        """Stop everything; returns the threads still stopping workers, to join at exit."""
        for worker in list(self.workers):
            self.stop_worker(worker)
        if self._manager is not None:
            with contextlib.suppress(Exception):  # the database may be gone already
                self.purge_runs(self._manager)
        if self._raw_app is not None:
            self.purge(self._raw_app, self.raw_settings.queue)
        self.backend.close()
        return self._stoppers


def wait_for_pool(worker: WorkerProcess, concurrency: int, timeout: float = 30.0) -> list[int]:
    """Until the worker has its full pool of live children (after a child was killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [pid for pid in child_pids(worker.pid) if pid_alive(pid)]
        if len(children) >= concurrency:
            return children
        time.sleep(0.02)
    raise RuntimeError(f"worker {worker.pid} has no full pool after {timeout}s:\n{worker.log()}")


def wait_for(predicate: Any, timeout: float, interval: float = 0.02, what: str = "") -> float:
    """Poll until true; returns the time.time() it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.time()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class StampWatcher:
    """Reads a stamp file incrementally: task id -> (start time, pid)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.buffer = b""
        self.stamps: dict[str, tuple[float, int]] = {}

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            task_id, started, pid = line.decode().split()
            self.stamps[task_id] = (float(started), int(pid))

    def wait(self, task_id: str, timeout: float = 30.0) -> tuple[float, int]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if task_id in self.stamps:
                return self.stamps[task_id]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} never started (stamp file {self.path})")
            time.sleep(0.001)

"""The five systems of the peers scenario, on one benchmark backend (its PostgreSQL server and
its Redis database): runqueue, raw Celery with task events off and on, Celery with the
database result backend, and Procrastinate. Each has its own queue or database, its own worker
process with the same execution slots, and a way to count what its own store shows done."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery

from benchmarks.harness import RAW_WORKER_APP, Bench, wait_for_pool
from benchmarks.peer_apps import (
    PROCRASTINATE_NOOP,
    database_backend_app,
    events_app,
    procrastinate_app,
)
from benchmarks.peer_load import Batch, Peer
from benchmarks.peer_services import (
    PeerProcess,
    celery_worker,
    database_backend_worker,
    libpq_url,
    procrastinate_worker,
)
from benchmarks.tasks import RAW_NOOP, count_lines, create_raw_app
from tests.support import WorkerProcess, create_database, drop_database

# What a done job looks like in each peer's own table: (final states, the success state).
CELERY_DONE = (
    "SELECT count(*) FILTER (WHERE status IN ('SUCCESS', 'FAILURE')),"
    " count(*) FILTER (WHERE status = 'SUCCESS') FROM celery_taskmeta"
)
PROCRASTINATE_DONE = (
    "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted')),"
    " count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs"
)


class RunqueueBatch:
    """Runs of the `noop` assistant, one thread each; done = final in runqueue's database."""

    def __init__(self, bench: Bench):
        self.bench, self.manager = bench, bench.manager()
        self.prefix = f"peer-{uuid.uuid4().hex[:8]}"
        self.before = bench.final_count()

    def submit(self, index: int) -> None:
        self.manager.create(f"{self.prefix}-{index}", "noop")

    def finished(self) -> int:
        return self.bench.final_count() - self.before

    def succeeded(self) -> int:
        return self.bench.status_counts(self.prefix).get("success", 0)


class StampBatch:
    """Raw Celery tasks; done = the task's line in its stamp file (no result backend)."""

    def __init__(self, app: Celery, path: Path):
        self.task, self.path = app.tasks[RAW_NOOP], path

    def submit(self, index: int) -> None:
        self.task.apply_async(args=[str(self.path)])

    def finished(self) -> int:
        return count_lines(self.path)

    succeeded = finished


class TableBatch:
    """Jobs whose outcome the peer writes to a table of its own; done = counted there, above
    what the table held when the batch began."""

    def __init__(self, submit: Callable[[], Any], counts: Callable[[], tuple[int, int]]):
        self._submit, self._counts = submit, counts
        self.before = counts()

    def submit(self, index: int) -> None:
        self._submit()

    def finished(self) -> int:
        return self._counts()[0] - self.before[0]

    def succeeded(self) -> int:
        return self._counts()[1] - self.before[1]


class PeerSet:
    """Starts every system's worker side by side and stops each by pid on exit; creates the
    peers' databases fresh and drops them."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.processes: list[PeerProcess] = []
        self.databases: list[str] = []
        self.readers: list[psycopg.Connection] = []
        self.celery_apps: list[Celery] = []
        self.runqueue_worker: WorkerProcess | None = None
        self.procrastinate: Any = None
        self.peers: list[Peer] = []

    def __enter__(self) -> PeerSet:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _queue(self, label: str) -> Any:
        settings = self.bench.settings
        return settings.with_overrides(queue=f"{settings.queue}-peer-{label}")

    def _reader(self, database_url: str, query: str) -> Callable[[], tuple[int, int]]:
        connection = psycopg.connect(libpq_url(database_url), autocommit=True)
        self.readers.append(connection)
        return lambda: tuple(connection.execute(query).fetchone())

    def _start(self) -> None:
        bench, concurrency = self.bench, self.bench.concurrency
        off, on, database = self._queue("raw-off"), self._queue("raw-on"), self._queue("db")
        celery_db = create_database(prefix="runqueue_bench_celery")
        self.databases.append(celery_db)
        procrastinate_db = create_database(prefix="runqueue_bench_procrastinate")
        self.databases.append(procrastinate_db)

        raw_off, raw_on = create_raw_app(off), events_app(on)
        result_backend = "db+" + celery_db
        with_results = database_backend_app(database, result_backend)
        self.celery_apps += [raw_off, raw_on, with_results]
        with_results.backend.ResultSession().close()  # creates celery_taskmeta to count in
        # Up to as many producer connections as runqueue's engine may hold (15).
        self.procrastinate = procrastinate_app(libpq_url(procrastinate_db), max_size=15)
        self.procrastinate.open()
        self.procrastinate.schema_manager.apply_schema()  # before its worker polls the table

        def log(label: str) -> Path:
            return bench.path(label).with_suffix(".log")

        self.processes += [
            celery_worker(RAW_WORKER_APP, off, log("raw-off"), concurrency, task_events=False),
            celery_worker(RAW_WORKER_APP, on, log("raw-on"), concurrency, task_events=True),
            database_backend_worker(database, result_backend, log("db-results"), concurrency),
            procrastinate_worker(libpq_url(procrastinate_db), log("procrastinate"), concurrency),
        ]
        for process in self.processes:
            process.launch()
        self.runqueue_worker = bench.start_worker()  # while the peers boot
        for process in self.processes:
            process.wait_ready()
            if process.argv[0] == "celery":
                wait_for_pool(process, concurrency)  # type: ignore[arg-type]
        self.peers = self._peers(raw_off, raw_on, with_results, celery_db, procrastinate_db)

    def _peers(
        self,
        raw_off: Celery,
        raw_on: Celery,
        with_results: Celery,
        celery_db: str,
        procrastinate_db: str,
    ) -> list[Peer]:
        bench = self.bench
        manager = bench.manager()
        noop = self.procrastinate.tasks[PROCRASTINATE_NOOP]
        celery_done = self._reader(celery_db, CELERY_DONE)
        procrastinate_done = self._reader(procrastinate_db, PROCRASTINATE_DONE)
        scratch = str(bench.path("peer-single-submits"))  # stamps nobody waits for

        def batch_of(app: Celery, label: str) -> Callable[[], Batch]:
            return lambda: StampBatch(app, bench.path(label))

        return [
            Peer(
                "runqueue",
                "runqueue",
                lambda: RunqueueBatch(bench),
                submit_one=lambda: manager.create(f"peer-one-{uuid.uuid4().hex}", "noop"),
            ),
            Peer(
                "procrastinate",
                "Procrastinate",
                lambda: TableBatch(noop.defer, procrastinate_done),
                submit_one=noop.defer,
            ),
            Peer(
                "celery_db_backend",
                "Celery + DB results",
                lambda: TableBatch(
                    lambda: with_results.tasks[RAW_NOOP].apply_async(args=[scratch]),
                    celery_done,
                ),
            ),
            Peer(
                "celery_raw_events_on", "Celery raw, events on", batch_of(raw_on, "stamps-raw-on")
            ),
            Peer(
                "celery_raw_events_off",
                "Celery raw, events off",
                batch_of(raw_off, "stamps-raw-off"),
                submit_one=lambda: raw_off.tasks[RAW_NOOP].apply_async(args=[scratch]),
            ),
        ]

    def stop_workers(self) -> None:
        """Stop every worker (each by pid, side by side: a warm shutdown takes seconds)."""
        stoppers = [threading.Thread(target=process.stop) for process in self.processes]
        if self.runqueue_worker is not None:
            if self.runqueue_worker in self.bench.workers:
                self.bench.workers.remove(self.runqueue_worker)
            stoppers.append(threading.Thread(target=self.runqueue_worker.stop))
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def close(self) -> None:
        try:
            self.stop_workers()
        finally:
            if self.procrastinate is not None:
                with contextlib.suppress(Exception):
                    self.procrastinate.close()
            for connection in self.readers:
                connection.close()
            for app in self.celery_apps:
                self.bench.purge(app, app.conf.task_default_queue)
            droppers = [  # side by side: each DROP DATABASE waits for a checkpoint
                threading.Thread(target=drop_database, args=(url,)) for url in self.databases
            ]
            for dropper in droppers:
                dropper.start()
            for dropper in droppers:
                dropper.join()

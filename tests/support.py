"""Helpers the tests share: backends on the real services, databases, worker processes,
journals and run factories."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from runqueue import RunRecord, Settings, SyncRunManager, create_app
from runqueue.celery.routing import run_queue
from runqueue.cli import processes
from runqueue.cli.processes import child_pids, pid_alive  # noqa: F401  (the tests' imports)
from runqueue.journal import Journal
from runqueue.records import StreamEvent
from runqueue.store.database import dispose_engines
from workers.assistants import WITH_JOURNAL, register_with_journal

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "RUNQUEUE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

# The commands docker-compose.yml runs; tests start the very same ones as real processes.
MIGRATE_COMMAND = ["runqueue", "migrate"]
HEALTH_COMMAND = ["runqueue", "health"]  # the compose health checks
WORKER_COMMAND = list(processes.WorkerProcess.COMMAND)
FLOWER_COMMAND = ["runqueue", "flower"]


def as_process(command: list[str]) -> list[str]:
    """Run a console-script command with this interpreter (the same entry point)."""
    return [sys.executable, "-m", command[0], *command[1:]]


def run_quick_benchmark(
    module: str, out: Path, table_line: str, *extra: str, timeout: float = 280
) -> dict:
    """`python -m <module> --quick --out OUT` from the checkout, as its smoke test: it exits
    0 and prints its table (`table_line` is in it); its JSON report."""
    finished = subprocess.run(
        [sys.executable, "-m", module, "--quick", *extra, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert table_line in finished.stdout  # the table was printed
    return json.loads(out.read_text())


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def checkout_path() -> dict[str, str]:
    """PYTHONPATH for a child process that imports this checkout (tests/ is not installed)."""
    return {"PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process that sees these settings and imports this checkout."""
    return settings.process_environment() | checkout_path()


def create_database(admin_url: str = POSTGRES_ADMIN_URL, prefix: str = "runqueue_test") -> str:
    """A new, empty database on the PostgreSQL server of `admin_url`; its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(database_url: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    """Drop a database made by create_database, closing this process's connections first."""
    dispose_engines()
    name = make_url(database_url).database
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Backend:
    """One database + broker pair, isolated from every other test session."""

    name: str
    settings: Settings
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def manager(self, **overrides: Any) -> SyncRunManager:
        settings = self.settings.with_overrides(**overrides) if overrides else self.settings
        app = create_app(settings, name=f"test-{self.name}-{uuid.uuid4().hex[:6]}")
        register_with_journal(app)
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
        fence_margin_seconds=1.0,  # a cut-off run stops itself 4 s after its last renewal
        maintenance_interval=0.5,
        # A queued run whose message never reached a pool child (seen once: delivered while
        # the thread's interrupted run's child was exiting) is published again this soon,
        # well inside the tests' 30 s joins; production waits 30 s.
        republish_after=5.0,
    )
    if "app" not in overrides:  # workers.app: the example assistants with their journal
        base["imports"] = WITH_JOURNAL
    base.update(overrides)
    if name == "embedded":
        backend = Backend(name, Settings(**base))
    elif name == "postgres_redis":
        database_url = create_database()
        redis_db = int(suffix, 16) % 16
        backend = Backend(
            name,
            Settings(
                database_url=database_url,
                broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
                **base,
            ),
        )
        backend.cleanups.append(lambda: drop_database(database_url))
    else:
        raise ValueError(name)
    backend.migrate()
    return backend


class WorkerProcess(processes.WorkerProcess):
    """The demo's WorkerProcess, started from this checkout so that it imports tests/."""

    def __init__(self, settings: Settings, log_path: Path, **options: Any):
        options.setdefault("cwd", REPO_ROOT)
        options["extra_env"] = checkout_path() | options.get("extra_env", {})
        super().__init__(settings, log_path, **options)


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


@dataclass
class RunFactory:
    """Creates runs of a journaling assistant (`steps` unless told) that record into one
    journal, so a test names only what matters to it: the thread, how long, which strategy."""

    manager: SyncRunManager
    journal: Journal

    def __call__(
        self,
        thread_id: str,
        *,
        strategy: str = "reject",
        assistant: str = "steps",
        check_strategy: bool = True,
        **kwargs: Any,
    ) -> RunRecord:
        """The assistant's keyword arguments (steps, delay, ...) as given, its own defaults
        otherwise; check_strategy=False creates with create() instead of create_or_reject()."""
        create = self.manager.create_or_reject if check_strategy else self.manager.create
        return create(
            thread_id,
            assistant,
            kwargs={**kwargs, "journal": str(self.journal)},
            multitask_strategy=strategy,
        )


class StreamReader(threading.Thread):
    """Follows one run's stream in a thread, noting when each event arrived (time.time(), to
    compare with the run's ended_at)."""

    def __init__(self, manager: SyncRunManager, run_id: str, after: str | None = None):
        super().__init__(name=f"stream-reader-{run_id[-6:]}", daemon=True)
        self.manager, self.run_id, self.after = manager, run_id, after
        self.received: list[tuple[float, StreamEvent]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for event in self.manager.stream(self.run_id, after=self.after):
                self.received.append((time.time(), event))
        except BaseException as error:  # noqa: BLE001 - handed to the test by result()
            self.error = error

    def begin(self) -> StreamReader:
        self.start()
        return self

    @property
    def events(self) -> list[StreamEvent]:
        return [event for _at, event in self.received]

    def result(self, timeout: float = 60.0) -> list[StreamEvent]:
        """Every event, once the stream has finished (its `end`)."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"the stream of run {self.run_id} did not end in {timeout}s")
        if self.error is not None:
            raise self.error
        return self.events

    def end_at(self) -> float:
        """When the `end` arrived."""
        at, event = self.received[-1]
        assert event.event == "end", event
        return at


def queue_of(manager: SyncRunManager, assistant_id: str = "echo") -> str:
    """The broker queue the runs of this assistant are sent to (runqueue.celery.routing)."""
    return run_queue(manager.runtime, assistant_id)


def queued_message_files(manager: SyncRunManager, assistant_id: str = "*") -> list[Path]:
    """The embedded broker's message files waiting for this assistant (all by default)."""
    prefix = f"{manager.settings.queue}.{manager.runtime.deployment_id}"
    return sorted(manager.settings.broker_dir.glob(f"*.{prefix}.{assistant_id}.msg"))


def stream_ids(events: list[StreamEvent]) -> list[int]:
    return [int(event.id) for event in events if event.id is not None]


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`runqueue ARGS` as a subprocess of this interpreter, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "runqueue", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def row_counts(manager: SyncRunManager, threads: list[str]) -> tuple[int, ...]:
    """Rows of these threads in runs, threads and run_events (other tests' runs may still be
    writing theirs)."""
    from sqlalchemy import func, select

    from runqueue.store.models import Run, RunEventRow, Thread

    with manager.store.transaction() as conn:
        return tuple(
            conn.execute(
                select(func.count()).select_from(table).where(table.thread_id.in_(threads))
            ).scalar()
            for table in (Run, Thread, RunEventRow)
        )


def redis_clients(pid: int, *, name: str | None = None, port: int = REDIS_PORT) -> list[dict]:
    """The Redis server's CLIENT LIST entries for the connections process `pid` holds open to
    it (those named `name` only, if given): its sockets (/proc/PID/fd) matched to their local
    ports (/proc/PID/net/tcp), so other processes' connections to the shared Redis never
    count."""
    import redis

    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
    local_ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in sockets and int(remote.split(":")[1], 16) == port:
            local_ports.add(int(local.split(":")[1], 16))
    client = redis.Redis(host=REDIS_HOST, port=port, decode_responses=True)
    try:
        entries = client.client_list()
    finally:
        client.close()
    return [
        entry
        for entry in entries
        if int(entry["addr"].rsplit(":", 1)[1]) in local_ports
        and (name is None or entry.get("name") == name)
    ]

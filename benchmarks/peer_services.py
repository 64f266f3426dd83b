"""The peers' processes and databases: a Celery worker started by Celery's own command line,
a Procrastinate worker by Procrastinate's, each peer with a fresh database of its own on the
benchmark's PostgreSQL server. Every process is stopped by its pid, every database dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.peer_apps import PROCRASTINATE_DSN_ENV, RESULT_BACKEND_ENV
from runqueue import Settings
from runqueue.cli.processes import stop_process_group
from tests.support import REPO_ROOT, checkout_path, settings_env

CELERY_DATABASE_APP = "benchmarks.peer_celery_worker:app"
PROCRASTINATE_APP = "benchmarks.peer_procrastinate_worker.app"


class PeerProcess:
    """A peer's worker: `python -m <argv>` in a session of its own, its output in a log file,
    ready once the log shows `ready_text`; stop() ends its process group by pid."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, ready_text: str):
        self.argv, self.env, self.log_path, self.ready_text = argv, env, log_path, ready_text
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> PeerProcess:
        """Start it without waiting, so that several peers boot side by side."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "the peer was not launched"
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90.0) -> PeerProcess:
        deadline = time.monotonic() + timeout
        while self.ready_text not in self.log():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"peer {self.argv[0]} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"peer {self.argv[0]} not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM to the group), then SIGKILL for anything left."""
        if self.process is None:
            return
        process, self.process = self.process, None
        stop_process_group(process, timeout)


def celery_worker(
    app: str,
    settings: Settings,
    log_path: Path,
    concurrency: int,
    *,
    task_events: bool,
    extra_env: dict[str, str] | None = None,
) -> PeerProcess:
    """`celery worker` with the options `runqueue worker` passes (prefork, no mingle, no
    gossip, one queue), task events on or off: the only difference between the raw peers."""
    argv = [
        "celery",
        f"--app={app}",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        f"--queues={settings.queue}",
        f"--hostname=peer-{uuid.uuid4().hex[:8]}@%h",
        *(["--task-events"] if task_events else []),
    ]
    env = settings_env(settings) | (extra_env or {})
    return PeerProcess(argv, env, log_path, " ready.")


def database_backend_worker(
    settings: Settings, result_backend: str, log_path: Path, concurrency: int
) -> PeerProcess:
    return celery_worker(
        CELERY_DATABASE_APP,
        settings,
        log_path,
        concurrency,
        task_events=False,
        extra_env={RESULT_BACKEND_ENV: result_backend},
    )


def procrastinate_worker(conninfo: str, log_path: Path, concurrency: int) -> PeerProcess:
    """`procrastinate worker` with `concurrency` jobs at once, woken by LISTEN/NOTIFY, logging
    every job at INFO like the Celery workers do."""
    argv = [
        "procrastinate",
        f"--app={PROCRASTINATE_APP}",
        "--log-level=info",
        "worker",
        f"--concurrency={concurrency}",
    ]
    env = os.environ | checkout_path() | {PROCRASTINATE_DSN_ENV: conninfo}
    return PeerProcess(argv, env, log_path, "Starting worker on")


def libpq_url(database_url: str) -> str:
    """The same database as a libpq URL, for psycopg and Procrastinate."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)

"""The HTTP API tests' processes: `runqueue serve` (the same command the compose file's `api`
service runs), and the LangGraph reference server for differential tests. Each runs in a
session of its own and is stopped by its pid."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from runqueue.cli.processes import stop_process_group
from runqueue.settings import Settings
from tests.support import REPO_ROOT, Backend, checkout_path

API_APP = "tests.api_app:app"
SERVE_COMMAND = ["runqueue", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server process, ready once GET /ok answers; stopped (its whole group) by pid."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, port: int, cwd: Path):
        self.argv, self.env, self.log_path, self.port, self.cwd = argv, env, log_path, port, cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready in {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        stop_process_group(process, timeout)


def api_server(
    settings: Settings,
    log_path: Path,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> ServerProcess:
    """`runqueue serve` on a free loopback port, for these settings ("info": with the access
    log)."""
    port = free_port()
    argv = [sys.executable, "-m", *SERVE_COMMAND, "--port", str(port), "--workers", str(workers)]
    argv += ["--log-level", log_level]
    env = settings.process_environment() | checkout_path() | (extra_env or {})
    return ServerProcess(argv, env, log_path, port, REPO_ROOT)


def table_counts(backend: Backend) -> dict[str, int]:
    """Rows in each table a request may write: what a refused request must leave as it was."""
    engine = create_engine(backend.settings.database_url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("threads", "runs", "run_events", "checkpoints", "api_keys")
            }
    finally:
        engine.dispose()

"""Readiness and health: a worker that cannot reach its database or broker never says ready
and exits non-zero within Settings.ready_timeout; `runqueue health` says the same in one line
(the compose health checks)."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from runqueue import Settings
from tests.faults import faultkit
from tests.support import (
    HEALTH_COMMAND,
    REPO_ROOT,
    WORKER_COMMAND,
    as_process,
    create_database,
    drop_database,
    settings_env,
)

READY_TIMEOUT = 3.0


def _start_worker(settings: Settings) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    finished = subprocess.run(
        as_process([*WORKER_COMMAND, "--concurrency=1", "--hostname=unready@%h"]),
        env=settings_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT + 30,
    )
    return finished, time.monotonic() - started


def _closed_port() -> int:
    port = faultkit.free_port()
    assert not faultkit.port_open(port)
    return port


@pytest.fixture
def unmigrated_database() -> Iterator[str]:
    url = create_database(prefix="runqueue_unmigrated")
    yield url
    drop_database(url)


@pytest.mark.parametrize(
    ("service", "says"),
    [
        ("database", "database unavailable"),
        ("broker", "broker unavailable"),
        ("schema", "database schema at revision none, not "),
    ],
)
def test_worker_without_its_service_exits_nonzero_and_never_says_ready(
    shared_backend, report, request, service, says
):
    port = _closed_port()
    if service == "database":
        missing = dict(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/runqueue")
    elif service == "broker":
        missing = dict(broker_url=f"redis://127.0.0.1:{port}/0")
    else:
        missing = dict(database_url=request.getfixturevalue("unmigrated_database"))
    settings = shared_backend.settings.with_overrides(ready_timeout=READY_TIMEOUT, **missing)
    finished, elapsed = _start_worker(settings)
    output = finished.stdout + finished.stderr
    report(f"unready-{service}", exit_code=finished.returncode, exited_after_s=elapsed)
    assert finished.returncode != 0
    assert " ready." not in output
    assert f"not ready after {READY_TIMEOUT:g}s: {says}" in output
    assert elapsed < READY_TIMEOUT + 15  # the bound, plus interpreter and Celery start-up


def _health(settings: Settings, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_process([*HEALTH_COMMAND, *options]),
        env=settings_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class _Endpoint(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_health_checks_database_broker_worker_and_url(shared_backend, workers, endpoint):
    settings = shared_backend.settings
    workers(settings, concurrency=1, name="healthy")
    (node,) = [worker.name for worker in faultkit.manager_for(settings).workers()]

    ok = _health(settings, "--worker", node, "--url", f"{endpoint}/ok")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"ok: database, broker, worker {node}, {endpoint}/ok"

    failures = {
        "unknown node": _health(settings, "--worker", "nobody@nowhere", "--timeout", "1"),
        "bad status": _health(settings, "--url", f"{endpoint}/down"),
        "no database": _health(
            settings.with_overrides(
                database_url=f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/x"
            )
        ),
        "no broker": _health(
            settings.with_overrides(broker_url=f"redis://127.0.0.1:{_closed_port()}/0"),
            "--timeout",
            "1",
        ),
    }
    for case, finished in failures.items():
        assert finished.returncode == 1, case
        assert finished.stdout == "", case
        lines = finished.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, finished.stderr)

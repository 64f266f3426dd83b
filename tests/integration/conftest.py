"""Fixtures of the HTTP API tests: one PostgreSQL + Redis backend serving tests/api_app.py,
a prefork worker, a `runqueue serve` process, and two users' API keys."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import Settings
from tests.api_support import API_APP, ServerProcess, api_server
from tests.conftest import require_services
from tests.support import Backend, WorkerProcess, as_process, make_backend, settings_env


def create_key(backend: Backend | Settings, user: str) -> str:
    """`runqueue api-key create USER` on this backend (or these settings): the key is all it
    prints on stdout."""
    settings = backend.settings if isinstance(backend, Backend) else backend
    done = subprocess.run(
        as_process(["runqueue", "api-key", "create", user]),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def api_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    require_services()
    backend = make_backend("postgres_redis", tmp_path_factory.mktemp("api"), app=API_APP)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def api_worker(api_backend: Backend, tmp_path_factory: pytest.TempPathFactory):
    log = Path(tmp_path_factory.mktemp("api-worker")) / "worker.log"
    process = WorkerProcess(api_backend.settings, log, concurrency=2).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def server(api_backend: Backend, api_worker, tmp_path_factory) -> Iterator[ServerProcess]:  # noqa: ANN001
    log = Path(tmp_path_factory.mktemp("api-server")) / "api.log"
    process = api_server(api_backend.settings, log).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keys(api_backend: Backend) -> dict[str, str]:
    return {"alice": create_key(api_backend, "alice"), "bob": create_key(api_backend, "bob")}

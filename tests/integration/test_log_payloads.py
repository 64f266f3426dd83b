"""Nothing leaves the process that a user did not mean to publish: a secret sent in a run's
kwargs and metadata, returned in its result, written by a failing run and carried in the
parameters of statements the database refused, appears in no log line of the API server or
the worker, logging at INFO (so WARNING and above too).

The database errors are real ones: triggers that raise when a row carries a marker, as a
constraint or a read-only failover would, so the statement that fails is the one that
carries the secret in its parameters.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api_support import API_APP, SERVE_COMMAND, ServerProcess, free_port
from tests.conftest import require_services
from tests.integration.conftest import create_key
from tests.support import (
    REPO_ROOT,
    Backend,
    WorkerProcess,
    checkout_path,
    make_backend,
    wait_until,
)

pytestmark = pytest.mark.integration

MARK = "fail-in-the-database"
# Raised by the database itself for a row that carries MARK: the failing statement is the
# one whose parameters hold the secret.
TRIGGERS = f"""
CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF row_to_json(NEW)::text LIKE '%{MARK}%' THEN
    RAISE EXCEPTION 'refused by a test trigger';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_marked_threads BEFORE INSERT ON threads
  FOR EACH ROW EXECUTE FUNCTION refuse_marked();
CREATE TRIGGER refuse_marked_checkpoints BEFORE INSERT ON run_checkpoints
  FOR EACH ROW EXECUTE FUNCTION refuse_marked();
"""


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    require_services()
    backend = make_backend("postgres_redis", tmp_path_factory.mktemp("log-payloads"), app=API_APP)
    url = backend.settings.database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TRIGGERS)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def logs(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A worker and an API server logging at INFO; their log files."""
    folder = tmp_path_factory.mktemp("log-payloads-logs")
    worker = WorkerProcess(backend.settings, folder / "worker.log", concurrency=2).start()
    port = free_port()
    argv = [sys.executable, "-m", *SERVE_COMMAND, "--port", str(port), "--log-level", "info"]
    env = backend.settings.process_environment() | checkout_path()
    server = ServerProcess(argv, env, folder / "api.log", port, REPO_ROOT).start()
    try:
        yield {"worker": worker.log_path, "api": server.log_path, "url": server.url}
    finally:
        server.stop()
        worker.stop()


def test_a_secret_reaches_no_log_line(backend, logs):
    secret = f"sk-{uuid.uuid4().hex}"
    key = create_key(backend, "alice")
    http = httpx.Client(base_url=logs["url"], headers={"x-api-key": key}, timeout=60)
    thread = http.post("/threads", json={"metadata": {"email": secret}})
    assert thread.status_code == 200, thread.text
    runs = f"/threads/{thread.json()['thread_id']}/runs"
    # A run that succeeds: the secret in its kwargs, metadata and result.
    done = http.post(
        f"{runs}/wait",
        json={"assistant_id": "echo", "input": {"api_token": secret}, "metadata": {"m": secret}},
    )
    assert done.status_code == 200 and secret in done.text  # the caller gets it back
    # A run that fails; its metadata carries the secret.
    failed = http.post(
        f"{runs}/wait",
        json={
            "assistant_id": "fail",
            "input": {"message": "on purpose"},
            "metadata": {"m": secret},
        },
    )
    assert "__error__" in failed.json()
    # A database error in the worker: the checkpoint statement carrying the secret is refused.
    refused = http.post(
        f"{runs}/wait", json={"assistant_id": "echo", "input": {"api_token": secret, "x": MARK}}
    )
    assert "refused by a test trigger" in refused.json()["__error__"]["message"]
    assert secret not in refused.text  # nor in the run's recorded error
    # A database error in the API: the thread's INSERT carrying the secret is refused.
    answer = http.post("/threads", json={"metadata": {"email": secret, "x": MARK}})
    assert answer.status_code >= 500
    # A key in the query string (refused: keys go in the header).
    assert httpx.get(f"{logs['url']}/threads/search?api_key={secret}", timeout=30).status_code
    for name in ("worker", "api"):
        text = logs[name].read_text(errors="replace")
        assert "INFO" in text  # it really logged at INFO
        leaked = [line for line in text.splitlines() if secret in line]
        assert leaked == [], (name, leaked[:3])


def test_log_payloads_on_is_the_debug_switch(tmp_path: Path):
    """RUNQUEUE_LOG_PAYLOADS=on lets Celery log a run's result again: the filter, not chance,
    is what keeps it out by default."""
    require_services()
    backend = make_backend("postgres_redis", tmp_path, log_payloads="on")
    worker = WorkerProcess(backend.settings, tmp_path / "worker.log", concurrency=1).start()
    try:
        manager = backend.manager()
        secret = f"sk-{uuid.uuid4().hex}"
        run = manager.create_or_reject("t-debug", "echo", kwargs={"api_token": secret})
        assert manager.join(run.run_id, timeout=30).result["echo"] == {"api_token": secret}
        wait_until(lambda: "succeeded in" in worker.log(), message="the success line")
        assert secret in worker.log()
    finally:
        worker.stop()
        backend.close()

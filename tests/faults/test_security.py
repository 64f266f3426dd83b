"""Security: workers accept JSON only (a pickle message is refused unread), and no database
or broker URL is ever logged with its password."""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue

from runqueue import DatabaseUnavailableError, RunStatus, Settings
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import queue_of


class _Gadget:
    """Unpickling this creates a directory: proof that someone deserialized the message."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (self.marker,))


def test_pickle_message_is_refused_and_never_executes(shared_backend, workers, report, tmp_path):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    marker = tmp_path / "unpickled"
    (worker,) = workers(settings, concurrency=1)

    task_id = str(uuid.uuid4())
    name = queue_of(manager, "echo")
    queue = Queue(name, Exchange(name), routing_key=name)
    with Connection(settings.broker_url) as connection:
        producer = connection.Producer(serializer="pickle")
        producer.publish(
            ((_Gadget(str(marker)),), {"journal": str(journal)}, {}),
            exchange=queue.exchange,
            routing_key=name,
            declare=[queue],
            headers={"lang": "py", "task": "echo", "id": task_id, "root_id": task_id},
        )
    # A JSON run queued behind it: once it ran, the worker had consumed the pickle message.
    probe = manager.create_or_reject(f"sec-{uuid.uuid4().hex[:8]}", "echo")
    assert manager.join(probe.run_id, timeout=30).status is RunStatus.success

    log = worker.log()
    report(
        "pickle-message",
        runs=1,
        executed=journal.starts()[task_id],
        unpickled=int(marker.exists()),
        refused=int("ContentDisallowed" in log),
    )
    assert "ContentDisallowed" in log
    assert not marker.exists()  # never unpickled
    assert task_id not in journal.starts()


def test_database_url_password_never_logged(caplog, shared_database, tmp_path):
    secret = f"db-secret-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"postgresql+psycopg://postgres:{secret}@127.0.0.1:{faultkit.free_port()}/x",
        broker_url="redis://127.0.0.1:6379/0",
        queue=f"runqueue-sec-{uuid.uuid4().hex[:8]}",
        app=faultkit.FAULT_APP,
    )
    manager = faultkit.manager_for(settings)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseUnavailableError) as raised:
        manager.create_or_reject("sec-db", "echo")
    assert secret not in str(raised.value)
    assert "***" in str(raised.value)  # the URL is there, redacted
    assert caplog.records is not None and secret not in caplog.text


def test_broker_url_password_never_logged(caplog, shared_database, tmp_path):
    secret = f"broker-secret-{uuid.uuid4().hex[:8]}"
    backend = faultkit.fault_backend(
        tmp_path,
        shared_database,
        # Port 1, not a free port: another test's private Redis may take a port that was free
        # a moment ago (seen once under xdist), and then the publish succeeds.
        f"redis://:{secret}@127.0.0.1:1/0",
    )
    manager = faultkit.manager_for(backend.settings)
    with caplog.at_level(logging.DEBUG):
        run = manager.create_or_reject("sec-broker", "echo")  # broker down: still recorded
    assert run.status is RunStatus.pending
    assert "publish failed" in caplog.text
    assert secret not in caplog.text


def test_worker_logs_never_show_passwords(shared_database, workers, tmp_path):
    """A worker with a password in both URLs (trust auth ignores the database one), through
    a run and then a broker outage: its log never shows either password."""
    db_secret, broker_secret = (f"s3cret-{uuid.uuid4().hex[:8]}" for _ in range(2))
    redis = faultkit.PrivateRedis(tmp_path / "redis.log", password=broker_secret).start()
    try:
        database_url = shared_database.replace("postgres@", f"postgres:{db_secret}@")
        backend = faultkit.fault_backend(tmp_path, database_url, redis.url)
        manager = faultkit.manager_for(backend.settings)
        (worker,) = workers(backend.settings, concurrency=1)
        run = manager.create_or_reject("sec-worker", "echo")
        assert manager.join(run.run_id, timeout=30).status is RunStatus.success
        redis.stop()  # connection errors get logged now
        faultkit.wait_for(lambda: "Connection" in worker.log().split(" ready.")[-1], 20, "errors")
        time.sleep(1.0)
        log = worker.log()
        assert db_secret not in log and broker_secret not in log
    finally:
        redis.stop()

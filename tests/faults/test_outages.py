"""Outages: the broker restarts and loses its queue, the database restarts under running
runs, the broker is down at create, the database is down at create."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from runqueue import DatabaseUnavailableError, RunStatus
from runqueue.journal import Journal
from runqueue.records import FINAL_STATUSES
from tests.faults import faultkit
from tests.support import RunFactory, queue_of


def _final_counts(manager, run_ids):  # noqa: ANN001, ANN202
    runs = [manager.get(run_id) for run_id in run_ids]
    return runs, sum(run.is_final for run in runs)


def test_redis_restart_with_200_runs_queued(
    shared_database, private_redis, workers, report, tmp_path
):
    """redis-server keeps nothing on disk here: the restart loses every queued message, and
    the relay publishes the still-pending runs again (republish_after = 2 s)."""
    backend = faultkit.fault_backend(
        tmp_path, shared_database, private_redis.url, republish_after=2.0
    )
    settings = backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run_factory = RunFactory(manager, journal)
    (worker,) = workers(settings, concurrency=2)
    runs = [
        run_factory(f"queued-{i}-{uuid.uuid4().hex[:6]}", steps=1, delay=0.02) for i in range(200)
    ]
    run_ids = [run.run_id for run in runs]
    queue = redis.Redis.from_url(private_redis.url)
    faultkit.wait_for(lambda: journal.count() >= 20, 60, "some runs executed")
    queued_before = queue.llen(queue_of(manager, "steps"))
    private_redis.restart()
    restarted_at = time.time()
    assert redis.Redis.from_url(private_redis.url).llen(queue_of(manager, "steps")) == 0  # all lost

    faultkit.wait_for(
        lambda: _final_counts(manager, run_ids)[1] == len(run_ids), 150, "all 200 runs final"
    )
    finals, _ = _final_counts(manager, run_ids)
    counts = journal.starts()
    recovered = max(run.ended_at.timestamp() for run in finals) - restarted_at
    report(
        "redis-restart-200-queued",
        runs=len(run_ids),
        lost=sum(counts[run_id] == 0 for run_id in run_ids),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        queued_at_restart=queued_before,
        all_done_after_s=recovered,
    )
    assert queued_before > 0
    assert all(run.status is RunStatus.success for run in finals)
    assert all(counts[run_id] == 1 for run_id in run_ids)  # none lost, none executed twice
    assert worker.process.poll() is None


def test_postgres_restart_while_runs_execute(
    private_postgres, private_redis, workers, report, tmp_path
):
    """Status writes and checkpoints retry with backoff through the restart; every status
    lands once the database is back, exactly once per run, and nothing stays in flight."""
    backend = faultkit.fault_backend(
        tmp_path, private_postgres.create_database(), private_redis.url, lease_seconds=8.0
    )
    settings = backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run_factory = RunFactory(manager, journal)
    workers(settings, concurrency=2)
    threads = [f"pg-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    run_ids = [
        run_factory(thread_id, steps=8, delay=0.25, strategy="enqueue").run_id
        for thread_id in threads
        for _ in range(2)
    ]
    faultkit.wait_for(lambda: journal.count(event="step") >= 2, 30, "runs executing")
    down_at = time.time()
    private_postgres.stop()
    time.sleep(2.0)  # long enough for every running run to hit the outage
    private_postgres.start()
    back_at = time.time()

    faultkit.wait_for(
        lambda: _final_counts(manager, run_ids)[1] == len(run_ids), 90, "every run final"
    )
    finals, _ = _final_counts(manager, run_ids)
    hit = [r for r in finals if r.started_at.timestamp() < down_at < r.ended_at.timestamp()]
    landed_after = max(r.ended_at.timestamp() for r in hit) - back_at if hit else 0.0
    report(
        "postgres-restart",
        runs=len(run_ids),
        lost=sum(not run.is_final for run in finals),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        runs_during_outage=len(hit),
        landed_after_s=landed_after,
    )
    assert hit, "the restart must happen while runs execute"
    for run in finals:
        assert run.status is RunStatus.success, (run.run_id, run.status, run.error)
        events = manager.events(run.run_id)
        assert sum(e.status in FINAL_STATUSES for e in events) == 1  # landed exactly once
    assert journal.duplicated() == 0 and journal.overlapping() == 0
    assert not any(manager.has_inflight(thread_id) for thread_id in threads)


def test_broker_down_create_records_and_runs_when_back(
    shared_database, private_redis, workers, report, tmp_path
):
    backend = faultkit.fault_backend(tmp_path, shared_database, private_redis.url)
    settings = backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    workers(settings, concurrency=1)
    private_redis.stop()

    started = time.monotonic()
    run = manager.create_or_reject(
        f"down-{uuid.uuid4().hex[:8]}", "echo", kwargs={"journal": str(journal)}
    )
    create_seconds = time.monotonic() - started
    assert run.status is RunStatus.pending
    assert manager.get(run.run_id) is not None  # recorded while the broker was down

    time.sleep(1.0)
    private_redis.start()
    back_at = time.time()
    done = manager.join(run.run_id, timeout=60)
    report(
        "broker-down-at-create",
        runs=1,
        lost=int(done.status is not RunStatus.success),
        duplicated=journal.duplicated(),
        overlapping=0,
        create_s=create_seconds,
        ran_after_broker_back_s=done.ended_at.timestamp() - back_at,
    )
    assert create_seconds < 5
    assert done.status is RunStatus.success
    assert journal.starts() == {run.run_id: 1}


def test_database_down_at_create_is_a_clear_error_and_nothing_published(private_redis, tmp_path):
    from runqueue import Settings

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{faultkit.free_port()}/gone",
        broker_url=private_redis.url,
        queue=f"runqueue-fault-{uuid.uuid4().hex[:8]}",
        app=faultkit.FAULT_APP,
    )
    manager = faultkit.manager_for(settings)
    with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
        manager.create_or_reject("db-down", "echo")
    queue = redis.Redis.from_url(private_redis.url)
    assert queue.llen(settings.queue) == 0 and queue.dbsize() == 0

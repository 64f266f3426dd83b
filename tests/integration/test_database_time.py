"""Database time: every timestamp the store writes or compares comes from the database's clock,
never the calling process's, and a lease that ran out by that clock ends the attempt's writes.

A process whose clock is an hour off (under `faketime`) writes runs, leases, the relay's
timers, the maintenance lock, the workers table, API keys, threads, a SQL stream, a delayed
run, a cron and its fire, an assistant's versions and webhook deliveries: every
value is the database's now (plus the intended delay). On SQLite, the text db_now() writes is
the very format SQLAlchemy stores, so values compare and order correctly whoever wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from langgraph.types import Command
from sqlalchemy import Column, DateTime, Table, literal, select, update

from runqueue import FencedOffError, RunStatus, Settings
from runqueue.langgraph import RunCheckpointer
from runqueue.langgraph.checkpointer import Fence
from runqueue.records import AbortAction, MultitaskStrategy, PruneStrategy, ThreadTtl
from runqueue.store import PruneOutcome
from runqueue.store.crons import NewCron
from runqueue.store.database import migrate, sqlite_path
from runqueue.store.decisions import NewRun, RunStore
from runqueue.store.models import Base, MaintenanceLock, Run
from runqueue.store.queries import RunQueries
from runqueue.store.rows import aware
from runqueue.store.transactions import db_now, db_now_plus
from runqueue.store.webhook_deliveries import WebhookDeliveries
from runqueue.stream.sql_transport import SqlStreamTransport
from runqueue.validation import new_run_id
from tests.conftest import require_services
from tests.integration.test_graph_checkpointer import GRAPH, config, snapshot
from tests.support import REPO_ROOT, Backend, checkout_path, make_backend

LEASE = 30.0  # the skewed writer's lease
RETRY_IN = 10.0  # its Celery retry's countdown (requeue_run publish_in)
REPUBLISH = 60.0  # its store's republish_after (longer than the writer takes)
LOCK_SECONDS = 20.0  # its maintenance lock
RETENTION = 50.0  # its SQL stream's retention
SLACK = 1.0  # seconds: SQLite's clock has milliseconds; the rest is exact
SKEW = 3600  # seconds the writer's clock is off, either way
DELAY = 25.0  # its delayed run's after_seconds
HOOK_RETRY_IN = 15.0  # its webhook's second attempt, this long after the first
HOOK_RETRY_FOR = 40.0  # how long its webhooks are retried (give_up_at)
# What a caller gives as an instant, not a clock's reading: written as given.
GIVEN_INSTANTS = {("crons", "end_time")}
KEEP_LATEST = PruneStrategy.keep_latest


def _new(thread_id: str, strategy: str = "reject") -> NewRun:
    return NewRun(
        run_id=new_run_id(),
        thread_id=thread_id,
        assistant_id="echo",
        user_id=None,
        multitask_strategy=MultitaskStrategy(strategy),
        on_disconnect="continue",
        metadata={},
        kwargs={},
        follow_up_to_run_id=None,
    )


def write_everything(database_url: str) -> None:
    """What a worker, the relay, the reaper's lock holder, the API and a stream write, from
    this process (run under faketime by the test). Prints {"time", "runs"} as JSON."""
    store = RunStore(database_url, republish_after=REPUBLISH)
    prefix = uuid.uuid4().hex[:8]

    def create(thread: str, strategy: str = "reject") -> str:
        run, _effects = store.create_run(_new(f"{prefix}-{thread}", strategy), check_strategy=True)
        return run.run_id

    def claim(run_id: str) -> str:
        token = str(uuid.uuid4())
        assert store.claim_run(run_id, "skewed@host", token, LEASE).claimed
        return token

    runs = {}
    # Thread 1: a running run (claimed, renewed, checkpointed), another held behind it.
    runs["running"] = create("one")
    token = claim(runs["running"])
    assert store.renew_lease(runs["running"], token, LEASE) == (True, None)
    assert store.save_checkpoint(runs["running"], token, {"n": 1})
    runs["held"] = create("one", "enqueue")
    # Thread 2: an attempt that failed, re-queued for a Celery retry in RETRY_IN seconds.
    runs["retried"] = create("two")
    assert store.requeue_run(
        runs["retried"], claim(runs["retried"]), publish_in=RETRY_IN, detail="retry"
    )
    # Thread 3: a run that ends and releases the next one (the relay's first look).
    runs["ended"] = create("three")
    token = claim(runs["ended"])
    runs["released"] = create("three", "enqueue")
    stream = SqlStreamTransport(database_url, retention_seconds=RETENTION, max_events=100)
    stream.open(runs["ended"], token, 1, "metadata", "{}")
    assert store.finish_run(runs["ended"], RunStatus.success, token=token)[0]
    assert stream.seal(runs["ended"], "success", [("end", "{}")], create=False)
    # Thread 4: cancelled before it started. Thread 5: its publish failed, the relay sent it.
    runs["cancelled"] = create("four")
    assert store.cancel_run(runs["cancelled"], AbortAction.interrupt)[0]
    runs["relayed"] = create("five")
    store.mark_unpublished(runs["relayed"])
    assert [run.run_id for run in store.runs_to_publish()] == [runs["relayed"]]
    # The maintenance lock, the workers table, API keys, a thread of its own.
    assert store.take_maintenance_lock("skewed@host", LOCK_SECONDS)
    store.register_worker(
        "skewed@host", pool="prefork", concurrency=1, assistants=["echo"], host="h", pid=1
    )
    assert store.beat_worker("skewed@host")
    store.register_worker(
        "stopped@host", pool="prefork", concurrency=1, assistants=["echo"], host="h", pid=2
    )
    store.stop_worker("stopped@host")
    assert [w.name for w in store.live_workers(LEASE)] == ["skewed@host"]
    key, _secret = store.create_api_key("alice")
    assert store.revoke_api_key(key.key_id)
    store.create_thread(f"{prefix}-six", None, {}, if_exists="raise")
    # Thread ttls: due or not by the database's clock, whatever this process's says; a
    # keep_latest sweep records when it pruned (ttl_swept_at).
    due, not_yet = f"{prefix}-seven", f"{prefix}-eight"
    store.create_thread(due, None, {}, if_exists="raise", ttl=ThreadTtl(KEEP_LATEST, 0.0))
    store.create_thread(not_yet, None, {}, if_exists="raise", ttl=ThreadTtl(KEEP_LATEST, 30.0))
    assert set(store.expired_threads(1000)) & {due, not_yet} == {due}
    assert store.sweep_thread(due).outcome is PruneOutcome.pruned
    runs.update(write_the_platform_rows(store, prefix, create, claim))
    print(
        json.dumps({"time": time.time(), "runs": runs, "key_created": key.created_at.isoformat()})
    )


def write_the_platform_rows(store: RunStore, prefix: str, create, claim) -> dict[str, str]:  # noqa: ANN001
    """A delayed run, a cron and its fire, an assistant with two versions, webhook deliveries
    (retried, delivered, claimed) and their attempts, from the skewed process."""
    delayed = dataclasses.replace(_new(f"{prefix}-nine"), after_seconds=DELAY)
    runs = {"delayed": store.create_run(delayed, check_strategy=True)[0].run_id}
    cron = store.create_cron(
        NewCron(
            cron_id=str(uuid.uuid4()),
            assistant_id="echo",
            thread_id=None,
            user_id=None,
            schedule="* * * * * *",
            timezone=None,
            end_time=datetime(2099, 1, 1, tzinfo=UTC),
            enabled=True,
            on_run_completed="keep",
            payload={},
            kwargs={},
            metadata={},
            multitask_strategy="enqueue",
            webhook=None,
        )
    )
    deadline = time.monotonic() + 5  # its first tick is within a second (by the database);
    while store.fire_cron(cron.cron_id, None, 60.0)[0] is None:  # no sleep: faketime breaks it
        assert time.monotonic() < deadline, "the cron never fell due"
    fields = dict(graph_id="echo", name="a", description=None, config={}, context={}, metadata={})
    made = store.put_assistant(str(uuid.uuid4()), None, fields, if_exists="raise")
    store.patch_assistant(made.assistant_id, None, {"name": "b"})
    hooks = WebhookDeliveries(store)
    for name in ("hook_retried", "hook_delivered", "hook_claimed"):
        new = dataclasses.replace(_new(f"{prefix}-{name}"), webhook="http://hooks.example/x")
        runs[name] = store.create_run(new, check_strategy=True)[0].run_id
        assert store.finish_run(runs[name], RunStatus.success, token=claim(runs[name]))[0]
        claimed = hooks.claim("skewed@host", LEASE, HOOK_RETRY_FOR)
        assert claimed is not None and claimed.run_id == runs[name]
        if name != "hook_claimed":
            delivered = name == "hook_delivered"
            hooks.record(
                claimed,
                delivered=delivered,
                retry_in=None if delivered else HOOK_RETRY_IN,
                status_code=200 if delivered else 503,
                error=None,
                duration_ms=1,
            )
    return runs


@pytest.fixture
def postgres_backend(tmp_path: Path) -> Iterator[Backend]:
    """A fresh PostgreSQL database: every timestamp in it is this test's."""
    require_services()
    backend = make_backend("postgres_redis", tmp_path)
    yield backend
    backend.close()


def _db_now(store: RunStore) -> datetime:
    with store.reading() as conn:
        return aware(conn.execute(select(db_now())).scalar_one())


def _datetime_columns(table: Table) -> list[Column]:
    return [column for column in table.columns if isinstance(column.type, DateTime)]


def _timestamps(store: RunStore) -> dict[tuple[str, str], list[tuple[dict, datetime]]]:
    """Every non-NULL value of every DateTime column of the schema, with its row."""
    found: dict[tuple[str, str], list[tuple[dict, datetime]]] = {}
    with store.reading() as conn:
        for table in Base.metadata.sorted_tables:
            columns = _datetime_columns(table)
            for row in conn.execute(select(table)).mappings():
                for column in columns:
                    if row[column.name] is not None:
                        found.setdefault((table.name, column.name), []).append(
                            (dict(row), aware(row[column.name]))
                        )
    return found


# Deadlines: (table, column) -> seconds after the write, per row (None: a record time).
def _ahead(table: str, column: str, row: dict, runs: dict[str, str]) -> float:
    if (table, column) in (
        ("runs", "lease_expires_at"),
        ("webhook_deliveries", "lease_expires_at"),
    ):
        return LEASE
    if table == "runs" and column in ("due_at", "next_publish_at") and row["due_at"]:
        return DELAY  # the delayed run: published by the due-run loop when due
    if (table, column) == ("webhook_deliveries", "give_up_at"):
        return HOOK_RETRY_FOR
    if (table, column) == ("webhook_deliveries", "next_attempt_at"):
        return HOOK_RETRY_IN if row["run_id"] == runs["hook_retried"] else 0.0
    if (table, column) == ("crons", "next_fire_at"):
        return 0.5  # the next whole second: within a second after the write
    if (table, column) == ("maintenance_locks", "expires_at"):
        return LOCK_SECONDS
    if (table, column) == ("run_streams", "expires_at"):
        return RETENTION
    if table == "runs" and column in ("dispatched_at", "next_publish_at"):
        publish_in = RETRY_IN if row["run_id"] == runs["retried"] else 0.0
        if column == "dispatched_at":
            return publish_in
        published = 1 if row["run_id"] == runs["relayed"] else 0
        return publish_in + REPUBLISH * 2**published
    return 0.0


@pytest.mark.parametrize("skew", [-SKEW, SKEW], ids=["behind", "ahead"])
def test_a_process_an_hour_off_writes_the_databases_time(postgres_backend, skew):
    assert shutil.which("faketime"), "faketime is missing (.ci/run installs it)"
    database_url = postgres_backend.settings.database_url
    store = RunStore(database_url)
    started = time.monotonic()
    before = _db_now(store)
    env = os.environ | checkout_path() | {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    code = "import sys; from tests.integration.test_database_time import write_everything as w; "
    code += "w(sys.argv[1])"
    done = subprocess.run(
        ["faketime", "-f", f"{skew:+d}s", sys.executable, "-c", code, database_url],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    real = time.time()
    after = _db_now(store)
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(done.stdout.strip().splitlines()[-1])
    # The writer really ran on a clock `skew` seconds off.
    assert abs(written["time"] - real - skew) < 30
    runs = written["runs"]

    checked = 0
    timestamps = _timestamps(store)
    for (table, column), values in timestamps.items():
        if (table, column) in GIVEN_INSTANTS:
            continue
        for row, value in values:
            ahead = _ahead(table, column, row, runs)
            low = before + timedelta(seconds=ahead - SLACK)
            high = after + timedelta(seconds=ahead + SLACK)
            assert low <= value <= high, (table, column, row, value, before, after)
            checked += 1
    # Every kind of timestamp was written, so the sweep above saw each of them.
    written_columns = set(timestamps)
    schema_columns = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in _datetime_columns(table)
    }
    assert schema_columns == written_columns, schema_columns ^ written_columns
    assert checked > 40
    # The lease, measured against the database's now: its full length, whatever the clock.
    with store.reading() as conn:
        left = conn.execute(
            select(Run.lease_expires_at, db_now()).where(Run.run_id == runs["running"])
        ).one()
    remaining = (aware(left[0]) - aware(left[1])).total_seconds()
    assert LEASE - (time.monotonic() - started) - SLACK <= remaining <= LEASE + SLACK
    # The key's record came back from the database, not the writer's clock.
    key_created = datetime.fromisoformat(written["key_created"])
    assert before - timedelta(seconds=SLACK) <= aware(key_created) <= after


def _expire(store: RunStore, run_id: str, seconds_ago: float = 1.0) -> None:
    """Move the run's lease into the past by the database's clock; it stays `running`."""
    with store.transaction() as conn:
        conn.execute(
            update(Run)
            .where(Run.run_id == run_id)
            .values(lease_expires_at=db_now_plus(-seconds_ago))
        )


def _claimed(manager, lease: float = 60.0) -> tuple[str, str]:  # noqa: ANN001
    run = manager.create(f"lease-{uuid.uuid4().hex[:10]}", "echo")
    token = str(uuid.uuid4())
    assert manager.store.claim_run(run.run_id, "in-process", token, lease).claimed
    return run.run_id, token


def test_an_attempt_whose_lease_ran_out_can_no_longer_write(manager):
    store = manager.store
    run_id, token = _claimed(manager)
    assert store.holds_run(run_id, token)
    # While the lease runs, the reaper may not re-queue it.
    assert not store.requeue_run(run_id, token, publish_in=None, detail="x", lease_over=True)

    _expire(store, run_id)
    assert manager.get(run_id).status is RunStatus.running  # nobody reaped it yet
    assert not store.holds_run(run_id, token)
    assert not store.save_checkpoint(run_id, token, {"late": True})
    assert store.renew_lease(run_id, token, 60.0) == (False, None)
    assert not store.requeue_run(run_id, token, publish_in=None, detail="late hand-back")
    assert not store.requeue_run(run_id, token, publish_in=5.0, detail="late retry")
    with pytest.raises(FencedOffError), store.graph_write(run_id, token, []):
        pass
    assert manager.checkpoints(manager.get(run_id).thread_id) == []
    assert manager.get(run_id).status is RunStatus.running
    # It belongs to the reaper now, which re-queues it (or ends it).
    assert (run_id, token) in store.expired_leases()
    assert store.requeue_run(run_id, token, publish_in=None, detail="reaped", lease_over=True)
    assert manager.get(run_id).status is RunStatus.pending


def test_the_reaper_never_ends_a_run_whose_lease_was_renewed_after_it_looked(manager):
    """The reaper lists expired leases, then ends each run in its own transaction: a renewal
    that commits in between wins, whether the run may be re-queued or not."""
    store = manager.store
    run_id, token = _claimed(manager)
    _expire(store, run_id)
    assert (run_id, token) in store.expired_leases()  # what the reaper saw
    # A renewal lands meanwhile (renew_lease refuses a lapsed lease, so it is written here
    # as the renewal that raced the expiry would have left it).
    with store.transaction() as conn:
        conn.execute(
            update(Run).where(Run.run_id == run_id).values(lease_expires_at=db_now_plus(60))
        )
    changed, _effects = store.finish_run(
        run_id, RunStatus.error, token=token, lease_over=True, error="worker lost"
    )
    assert not changed
    assert not store.requeue_run(run_id, token, publish_in=None, detail="x", lease_over=True)
    assert manager.get(run_id).status is RunStatus.running
    _expire(store, run_id)
    changed, _effects = store.finish_run(
        run_id, RunStatus.error, token=token, lease_over=True, error="worker lost"
    )
    assert changed and manager.get(run_id).status is RunStatus.error


def test_the_lease_is_judged_to_the_sub_second(manager):
    store = manager.store
    run_id, token = _claimed(manager, lease=0.4)
    assert store.holds_run(run_id, token)
    assert store.renew_lease(run_id, token, 0.4)[0]
    time.sleep(0.6)
    assert not store.holds_run(run_id, token)
    assert run_id in dict(store.expired_leases())


def test_a_graph_checkpoint_is_refused_once_the_lease_ran_out(manager):
    thread_id = f"graph-lease-{uuid.uuid4().hex[:10]}"
    run = manager.create(thread_id, "echo")
    token = str(uuid.uuid4())
    assert manager.store.claim_run(run.run_id, "in-process", token, 60.0).claimed
    graph = GRAPH.copy(
        update={"checkpointer": RunCheckpointer(manager.store, Fence(run.run_id, token))}
    )
    graph.invoke({"log": []}, config(thread_id))  # stops at interrupt(), checkpoints written
    kept = snapshot(manager, thread_id)
    assert kept[0]["log"] == ["first"]

    _expire(manager.store, run.run_id)
    with pytest.raises(FencedOffError):  # the ledger insert's own fence
        graph.invoke(Command(resume="too late"), config(thread_id))
    assert snapshot(manager, thread_id) == kept


@pytest.fixture
def sqlite_store(tmp_path: Path) -> RunStore:
    """The embedded database, in this process."""
    settings = Settings(data_dir=tmp_path)
    migrate(settings)
    return RunStore(settings.database_url)


STORED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # SQLAlchemy's SQLite DATETIME


def test_sqlite_writes_the_database_time_as_sqlalchemy_stores_a_datetime(sqlite_store):
    store = sqlite_store
    thread_id = "sqlite-time"
    written_before = datetime.now(UTC)
    first, _ = store.create_run(_new(thread_id), check_strategy=True)
    second, _ = store.create_run(_new(thread_id, "enqueue"), check_strategy=True)
    token = str(uuid.uuid4())
    assert store.claim_run(first.run_id, "w", token, 5.0).claimed
    assert store.save_checkpoint(first.run_id, token, {"n": 1})
    assert store.finish_run(first.run_id, RunStatus.success, token=token)[0]
    assert store.take_maintenance_lock("w", 3.0)
    written_after = datetime.now(UTC)

    # The text is exactly the format SQLAlchemy writes for a Python datetime.
    with sqlite3.connect(sqlite_path(store.database_url)) as raw:
        texts = [
            value
            for query in (
                "SELECT created_at, updated_at, started_at, ended_at, dispatched_at,"
                " next_publish_at, lease_expires_at FROM runs",
                "SELECT at FROM run_events",
                "SELECT created_at FROM run_checkpoints",
                "SELECT created_at, updated_at FROM threads",
                "SELECT expires_at FROM maintenance_locks",
            )
            for row in raw.execute(query)
            for value in row
            if value is not None
        ]
    assert len(texts) >= 14 and all(STORED.match(text) for text in texts), texts
    # It reads back as the UTC time it names (the host's clock), in the order written.
    queries = RunQueries(store)
    ended = queries.get(first.run_id)
    slack = timedelta(milliseconds=5)
    assert written_before - slack <= ended.created_at <= ended.started_at <= ended.ended_at
    assert ended.ended_at <= written_after + slack
    with store.reading() as conn:
        lock = conn.execute(select(MaintenanceLock.expires_at)).scalar_one()
    assert aware(lock) - ended.ended_at >= timedelta(seconds=3) - slack
    events = [event.at for event in queries.events(first.run_id)]
    assert len(events) == 3 and events == sorted(events)
    assert [run.run_id for run in queries.list_by_thread(thread_id)] == [
        second.run_id,
        first.run_id,
    ]


def test_sqlite_compares_database_time_with_python_written_values(sqlite_store):
    """A value SQLAlchemy wrote from a Python datetime (microseconds) and db_now()'s text
    (milliseconds, zero-padded) compare as the times they name, to the millisecond."""
    now = datetime.now(UTC)
    with sqlite_store.reading() as conn:

        def compare(value: datetime) -> tuple[bool, bool]:
            stamped = literal(value, DateTime(timezone=True))
            before, after = conn.execute(select(stamped < db_now(), stamped > db_now())).one()
            return bool(before), bool(after)

        assert compare(now - timedelta(milliseconds=50)) == (True, False)
        assert compare(now + timedelta(milliseconds=300)) == (False, True)
        assert compare(now - timedelta(days=1, microseconds=1)) == (True, False)
        assert compare(now + timedelta(seconds=59, microseconds=999_999)) == (False, True)
        later, earlier, current = conn.execute(
            select(db_now_plus(0.25), db_now_plus(-0.25), db_now())
        ).one()
    assert abs((later - current).total_seconds() - 0.25) <= 0.002
    assert abs((current - earlier).total_seconds() - 0.25) <= 0.002
    assert abs((aware(current) - now).total_seconds()) < 1.0

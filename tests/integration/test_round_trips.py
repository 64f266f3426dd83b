"""PostgreSQL: each hot transition (create with its strategy, claim, finish with the release
of the thread's next run) is one statement on an autocommit connection, so one round trip;
and it decides exactly what the statement path (SQLite's, and PostgreSQL's before 0007)
decides for the same history."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, select

from runqueue.errors import ConflictError, SchemaMissingError, ThreadNotFoundError
from runqueue.records import MultitaskStrategy, RunStatus
from runqueue.store.database import alembic_config, migrate
from runqueue.store.decisions import NewRun, RunStore
from runqueue.store.models import Run, RunEventRow, Thread
from runqueue.validation import new_run_id
from tests.conftest import require_services
from tests.support import Backend, make_backend


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    require_services()
    backend = make_backend("postgres_redis", tmp_path_factory.mktemp("round-trips"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def store(postgres: Backend) -> RunStore:
    postgres.manager()  # migrates the database
    return RunStore(postgres.settings.database_url)


def new_run(thread_id: str, strategy: MultitaskStrategy | None = None, **fields: Any) -> NewRun:
    return NewRun(
        run_id=new_run_id(),  # as the product makes them: time-ordered within a process
        thread_id=thread_id,
        assistant_id="echo",
        user_id=fields.pop("user_id", None),
        multitask_strategy=strategy,
        on_disconnect="continue",
        metadata={"m": 1},
        kwargs={"k": [1, 2]},
        follow_up_to_run_id=None,
        **fields,
    )


@contextmanager
def statements(store: RunStore) -> Iterator[list[tuple[str, bool]]]:
    """Every statement sent, with whether its connection was in autocommit (no BEGIN or
    COMMIT round trip around it)."""
    sent: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        sent.append((statement, conn.connection.driver_connection.autocommit))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def one_round_trip(store: RunStore, call: Callable[[], Any]) -> Any:
    with statements(store) as sent:
        outcome = call()
    assert len(sent) == 1, [statement for statement, _ in sent]
    assert sent[0][1], "the transition's statement was not sent in autocommit"
    return outcome


def test_create_claim_finish_are_one_round_trip_each(store: RunStore):
    thread = f"rt-{uuid.uuid4().hex[:8]}"
    first, second = new_run(thread), new_run(thread, MultitaskStrategy.enqueue)

    run, effects = one_round_trip(store, lambda: store.create_run(first, check_strategy=True))
    assert run.status is RunStatus.pending and [r.run_id for r in effects.publish] == [run.run_id]
    held, effects = one_round_trip(store, lambda: store.create_run(second, check_strategy=True))
    assert effects.publish == []  # held behind the first

    claim = one_round_trip(store, lambda: store.claim_run(first.run_id, "w1", "tok-1", 30.0))
    assert claim.claimed and claim.run.attempt == 1 and claim.run.worker == "w1"

    changed, effects = one_round_trip(
        store,
        lambda: store.finish_run(
            first.run_id, RunStatus.success, token="tok-1", result={"ok": True}, worker="w1"
        ),
    )
    assert changed
    assert [r.run_id for r in effects.publish] == [held.run_id]  # released, same statement
    assert [e.status for e in effects.ended] == [RunStatus.success]

    # A duplicate finish is refused, still in one round trip, and releases nothing.
    changed, effects = one_round_trip(
        store, lambda: store.finish_run(first.run_id, RunStatus.error, token="tok-1")
    )
    assert not changed and effects.publish == []


def test_refusals_are_one_round_trip_and_write_nothing(store: RunStore):
    thread = f"rt-{uuid.uuid4().hex[:8]}"
    store.create_run(new_run(thread), check_strategy=True)
    before = history(store, thread)
    with pytest.raises(ConflictError, match="already has an active run"):
        one_round_trip(
            store,
            lambda: store.create_run(
                new_run(thread, MultitaskStrategy.reject), check_strategy=True
            ),
        )
    with pytest.raises(ThreadNotFoundError):
        one_round_trip(
            store,
            lambda: store.create_run(
                new_run(f"rt-missing-{uuid.uuid4().hex[:8]}", create_thread=False),
                check_strategy=True,
            ),
        )
    with pytest.raises(ThreadNotFoundError):
        one_round_trip(
            store,
            lambda: store.create_run(
                new_run(thread, user_id="mallory", own_thread=True), check_strategy=True
            ),
        )
    assert history(store, thread) == before  # not even the thread's updated_at moved


def history(store: RunStore, thread_id: str) -> tuple[Any, ...]:
    with store.reading() as conn:
        runs = conn.execute(select(Run.run_id, Run.status).where(Run.thread_id == thread_id))
        events = conn.execute(
            select(RunEventRow.event_id).where(RunEventRow.thread_id == thread_id)
        )
        touched = conn.execute(select(Thread.updated_at).where(Thread.thread_id == thread_id))
        return (sorted(runs.all()), sorted(events.all()), touched.scalar())


# The same history through both paths must leave the same statuses, dispatch states, events
# and outcomes: the functions are the statements, moved into the database.
SCRIPT: list[tuple[str, Any]] = [
    ("create", None),
    ("create", MultitaskStrategy.enqueue),
    ("create", MultitaskStrategy.enqueue),
    ("create", MultitaskStrategy.reject),
    ("claim", 0),
    ("claim", 1),  # held behind run 0
    ("finish", 0),  # releases run 1
    ("claim", 2),  # still held behind run 1, now queued
    ("claim", 1),
    ("create", MultitaskStrategy.interrupt),  # interrupts run 1 (running) and run 2 (pending)
    ("finish", 1),
    ("claim", 3),
    ("finish", (3, {"token": "not-the-claim"})),  # refused: another attempt's token
    ("finish", (3, {"claimed_by": "another-worker"})),  # refused: not this worker's claim
    ("finish", (3, {"lease_over": True})),  # refused: the lease is still live
    ("finish", (3, {"result": {"ok": [1, 2]}, "worker": "w", "detail": "done"})),
    ("finish", (3, {"error": "late duplicate"})),  # refused: already final
    ("create", MultitaskStrategy.enqueue),
    ("claim", 4),
    ("finish", (4, {"error": "boom", "status": RunStatus.error})),
    ("create", MultitaskStrategy.enqueue),
    ("claim", 5),
    ("create", MultitaskStrategy.rollback),  # rolls back run 5 (running): run 6 waits for it
    ("finish", (5, {"status": RunStatus.interrupted})),  # releases run 6
    ("claim", 6),
    ("finish", 6),
]


def replay(store: RunStore, thread: str) -> list[Any]:
    runs: list[NewRun] = []
    seen: list[Any] = []
    for step, argument in SCRIPT:
        if step == "create":
            new = new_run(thread, argument)
            try:
                run, effects = store.create_run(new, check_strategy=True)
            except ConflictError:
                seen.append("conflict")
                continue
            runs.append(new)
            seen.append((run.status.value, sorted(e.status.value for e in effects.ended)))
            for run_id, _worker in effects.terminate:
                seen.append(("terminate", [r.run_id for r in runs].index(run_id)))
        elif step == "claim":
            seen.append(store.claim_run(runs[argument].run_id, "w", f"t{argument}", 30.0).outcome)
        else:
            index, options = argument if isinstance(argument, tuple) else (argument, {})
            options = {"token": f"t{index}", "claimed_by": "w", **options}
            default = RunStatus.interrupted if index == 1 else RunStatus.success
            status = options.pop("status", default)
            changed, effects = store.finish_run(runs[index].run_id, status, **options)
            released = [[r.run_id for r in runs].index(p.run_id) for p in effects.publish]
            seen.append((changed, released))
    with store.reading() as conn:
        ordered = {new.run_id: index for index, new in enumerate(runs)}
        rows = conn.execute(
            select(
                Run.run_id,
                Run.status,
                Run.dispatch_state,
                Run.attempt,
                Run.worker,
                Run.result,
                Run.error,
                Run.lease_expires_at.is_(None).label("no_lease"),
            ).where(Run.thread_id == thread)
        ).all()
        seen.append(sorted((ordered[r.run_id], *r[1:]) for r in rows))
        events = conn.execute(
            select(RunEventRow.run_id, RunEventRow.status, RunEventRow.worker, RunEventRow.detail)
            .where(RunEventRow.thread_id == thread)
            .order_by(RunEventRow.event_id)
        ).all()
        seen.append([(ordered[e.run_id], *e[1:]) for e in events])
    return seen


def test_functions_decide_what_the_statements_decide(store: RunStore, monkeypatch):
    by_functions = replay(store, f"rt-fn-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(type(store), "has_functions", property(lambda self: False))
    by_statements = replay(store, f"rt-st-{uuid.uuid4().hex[:8]}")
    assert by_functions == by_statements


def test_sqlite_statements_decide_what_the_functions_decide(store: RunStore, tmp_path: Path):
    backend = make_backend("embedded", tmp_path)
    try:
        backend.manager()
        sqlite = RunStore(backend.settings.database_url)
        assert not sqlite.has_functions
        assert replay(sqlite, "rt-sqlite") == replay(store, f"rt-pg-{uuid.uuid4().hex[:8]}")
    finally:
        backend.close()


def test_a_schema_without_the_functions_says_to_migrate(tmp_path: Path):
    require_services()
    backend = make_backend("postgres_redis", tmp_path)
    try:
        migrate(backend.settings)
        command.downgrade(alembic_config(backend.settings), "0006")  # drops the functions
        store = RunStore(backend.settings.database_url)
        with pytest.raises(SchemaMissingError, match=r"no function runqueue_create_run.*migrate"):
            store.create_run(new_run("rt-old-schema"), check_strategy=True)
        with store.reading() as conn:  # and it wrote nothing
            assert conn.execute(select(Run.run_id)).all() == []
    finally:
        backend.close()

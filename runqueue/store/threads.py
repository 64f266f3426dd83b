"""Threads as the HTTP API sees them: created on their own, searched, deleted with their runs.

A thread's status is not stored: it is read from its runs in the same statement (busy while a
run is pending or running, else what its latest run says), so it can never disagree with them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    delete,
    exists,
    func,
    inspect,
    literal,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.errors import ThreadBusyError, ThreadExistsError
from runqueue.records import ThreadRecord, ThreadStatus, ThreadView
from runqueue.store.models import Run, Thread
from runqueue.store.rows import THREAD_COLUMNS, thread_record
from runqueue.store.transactions import IS_INFLIGHT, StoreBase, db_now

# LangGraph's savers keep a thread's graph state under its thread_id (their setup() makes
# these tables; they may be absent where the extra was never installed).
GRAPH_STATE_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "writes")
INSERT_THREAD = {
    dialect: insert_for(Thread.__table__)
    .values(created_at=db_now(), updated_at=db_now())
    .on_conflict_do_nothing()
    .returning(*THREAD_COLUMNS)
    for dialect, insert_for in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def _latest(column: Any) -> Any:
    """A value of the thread's newest run, as a correlated scalar subquery."""
    return (
        select(column)
        .where(Run.thread_id == Thread.thread_id)
        .order_by(Run.created_at.desc(), Run.run_id.desc())
        .limit(1)
        .correlate(Thread)
        .scalar_subquery()
    )


def _stopped_at_interrupt(dialect: str) -> ColumnElement[Any]:
    """The run's result carries `__interrupt__`: its graph waits for a human."""
    if dialect == "postgresql":
        return func.jsonb_exists(type_coerce(Run.result, JSONB), "__interrupt__")
    return func.json_type(Run.result, "$.__interrupt__").is_not(None)


def status_expression(dialect: str) -> ColumnElement[str]:
    inflight = exists().where(Run.thread_id == Thread.thread_id, IS_INFLIGHT)
    latest_status = _latest(Run.status)
    # A run cancelled with `interrupt` leaves its thread interrupted (its writes are kept, as
    # the reference server's threads read); one rolled back leaves it as it was: idle.
    kept_cancel = and_(
        Run.status == "interrupted", func.coalesce(Run.abort_action, "interrupt") != "rollback"
    )
    return case(
        (inflight, literal(ThreadStatus.busy.value)),
        (latest_status.in_(["error", "timeout"]), literal(ThreadStatus.error.value)),
        (_latest(_stopped_at_interrupt(dialect)), literal(ThreadStatus.interrupted.value)),
        (_latest(kept_cancel), literal(ThreadStatus.interrupted.value)),
        else_=literal(ThreadStatus.idle.value),
    )


INT64 = 2**63


def _sqlite_has(key: str, value: Any) -> ColumnElement[bool]:
    """SQLite: the metadata has `key` (any characters: matched as json_each's key, never
    parsed as a path) with this value. Numbers compare by value (1 matches 1.0, as JSONB
    does); objects and arrays must be equal, not merely contain it (docs/api.md)."""
    entry = func.json_each(Thread.metadata_).table_valued("key", "value", "type").alias()
    if value is None or isinstance(value, bool):
        kind = "null" if value is None else ("true" if value else "false")
        matches = entry.c.type == kind
    elif isinstance(value, int | float):
        number = float(value) if isinstance(value, int) and abs(value) >= INT64 else value
        matches = and_(entry.c.type.in_(["integer", "real"]), entry.c.value == number)
    elif isinstance(value, str):
        matches = and_(entry.c.type == "text", entry.c.value == value)
    else:
        matches = and_(
            entry.c.type.in_(["object", "array"]),
            func.json(entry.c.value) == func.json(json.dumps(value)),
        )
    return exists().where(entry.c.key == key, matches)


def metadata_contains(dialect: str, wanted: dict[str, Any]) -> list[ColumnElement[bool]]:
    """Conditions: the thread's metadata holds every key of `wanted` with its value.
    PostgreSQL: JSONB containment (@>). SQLite: per top-level key (see _sqlite_has)."""
    if not wanted:
        return []
    if dialect == "postgresql":
        return [type_coerce(Thread.metadata_, JSONB).contains(wanted)]
    return [_sqlite_has(key, value) for key, value in wanted.items()]


class ThreadStatements(StoreBase):
    """Creating, reading, searching and deleting threads."""

    def create_thread(
        self, thread_id: str, user_id: str | None, metadata: dict[str, Any], *, if_exists: str
    ) -> ThreadRecord:
        """A new thread; if one exists: ThreadExistsError (`raise`), or the existing one
        (`do_nothing`), unless it is another user's (ThreadExistsError: it cannot be used)."""
        with self.transaction() as conn:
            row = conn.execute(
                INSERT_THREAD[conn.dialect.name],
                dict(thread_id=thread_id, user_id=user_id, metadata=metadata),
            ).first()
            if row is not None:
                return thread_record(row)
            existing = self._thread(conn, thread_id, user_id)
        if existing is None or if_exists == "raise":
            raise ThreadExistsError(f"thread {thread_id} already exists")
        return existing

    def _thread(self, conn: Connection, thread_id: str, user_id: str | None) -> ThreadRecord | None:
        query = select(*THREAD_COLUMNS).where(Thread.thread_id == thread_id)
        if user_id is not None:
            query = query.where(Thread.user_id == user_id)
        row = conn.execute(query).first()
        return None if row is None else thread_record(row)

    def get_thread(self, thread_id: str, user_id: str | None) -> ThreadView | None:
        views = self.search_threads(user_id=user_id, ids=[thread_id], limit=1)
        return views[0] if views else None

    def search_threads(
        self,
        *,
        user_id: str | None,
        metadata: dict[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        status: ThreadStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[ThreadView]:
        """Threads with their status, newest first unless `sort_by` / `descending` say
        otherwise (thread_id, status, created_at or updated_at; ties by thread id)."""
        with self.reading() as conn:
            dialect = conn.dialect.name
            status_column = status_expression(dialect).label("thread_status")
            inner = select(*THREAD_COLUMNS, status_column)
            if user_id is not None:
                inner = inner.where(Thread.user_id == user_id)
            if ids is not None:
                inner = inner.where(Thread.thread_id.in_(list(ids)))
            for condition in metadata_contains(dialect, metadata or {}):
                inner = inner.where(condition)
            threads = inner.subquery()
            query = select(threads)
            if status is not None:
                query = query.where(threads.c.thread_status == status.value)
            key = threads.c.thread_status if sort_by == "status" else threads.c[sort_by]
            order = (
                [key.desc(), threads.c.thread_id.desc()]
                if descending
                else [key, threads.c.thread_id]
            )
            query = query.order_by(*order).limit(limit).offset(offset)
            return [
                ThreadView(thread_record(row), ThreadStatus(row.thread_status))
                for row in conn.execute(query)
            ]

    def delete_thread(self, thread_id: str, user_id: str | None) -> list[str]:
        """Delete a thread with its runs (their history and checkpoints) and its graph
        state; the ids of the deleted runs, whose streams the caller deletes. Refused with
        ThreadBusyError while a run is pending or running: deleting never stops work."""
        with self.transaction() as conn:
            self.lock_thread(conn, thread_id, user_id, create=False, owned=True)
            busy = select(Run.run_id).where(Run.thread_id == thread_id, IS_INFLIGHT).limit(1)
            if conn.execute(busy).first() is not None:
                raise ThreadBusyError(
                    f"thread {thread_id} has a run in flight: cancel it first, then delete"
                )
            run_ids = list(
                conn.execute(delete(Run).where(Run.thread_id == thread_id).returning(Run.run_id))
                .scalars()
                .all()
            )
            present = set(inspect(conn).get_table_names())
            for table in GRAPH_STATE_TABLES:
                if table in present:
                    statement = text(f"DELETE FROM {table} WHERE thread_id = :thread_id")
                    conn.execute(statement, {"thread_id": thread_id})
            conn.execute(delete(Thread).where(Thread.thread_id == thread_id))
        return run_ids

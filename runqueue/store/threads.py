"""Threads as the HTTP API sees them: created on their own, searched and counted, their
metadata merged, deleted with their runs (copies and pruning: thread_copies.py,
thread_retention.py).

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
    Select,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    not_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.errors import ThreadBusyError, ThreadExistsError
from runqueue.records import ThreadRecord, ThreadStatus, ThreadTtl, ThreadView
from runqueue.store.models import Run, Thread
from runqueue.store.rows import THREAD_COLUMNS, thread_record
from runqueue.store.thread_copies import ThreadCopies
from runqueue.store.thread_retention import ThreadRetention, delete_thread_rows
from runqueue.store.transactions import IS_INFLIGHT, db_now

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


def _sqlite_has(key: str, value: Any, column: Any = Thread.metadata_) -> ColumnElement[bool]:
    """SQLite: the metadata has `key` (any characters: matched as json_each's key, never
    parsed as a path) with this value. Numbers compare by value (1 matches 1.0, as JSONB
    does); objects and arrays must be equal, not merely contain it (docs/api.md)."""
    entry = func.json_each(column).table_valued("key", "value", "type").alias()
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


def metadata_contains(
    dialect: str, wanted: dict[str, Any], column: Any = Thread.metadata_
) -> list[ColumnElement[bool]]:
    """Conditions: the thread's metadata (or another JSON `column`) holds every key of
    `wanted` with its value. PostgreSQL: JSONB containment (@>). SQLite: per top-level key
    (see _sqlite_has)."""
    if not wanted:
        return []
    if dialect == "postgresql":
        return [type_coerce(column, JSONB).contains(wanted)]
    return [_sqlite_has(key, value, column) for key, value in wanted.items()]


def merged_metadata(dialect: str, patch: dict[str, Any]) -> ColumnElement[Any]:
    """The thread's metadata with `patch`'s keys set over it, top level only (a nested object
    is replaced, null is stored as null), as the reference server merges a PATCH.
    PostgreSQL: JSONB `||`. SQLite: the entries of both, rebuilt (json_patch would merge
    nested objects and drop nulls)."""
    if dialect == "postgresql":
        given = bindparam("metadata_patch", patch, type_=JSONB)
        return type_coerce(Thread.metadata_, JSONB).op("||")(given)
    given = bindparam("metadata_patch", json.dumps(patch), type_=String)
    kept = func.json_each(Thread.metadata_).table_valued("key", "value", "type").alias("kept")
    added = func.json_each(given).table_valued("key", "value", "type").alias("added")
    entries = union_all(
        select(kept.c.key, kept.c.value, kept.c.type)
        .where(kept.c.key.not_in(select(added.c.key)))
        .correlate(Thread),
        select(added.c.key, added.c.value, added.c.type),
    ).subquery()
    kind = entries.c.type
    value = case(
        (kind.in_(["object", "array"]), func.json(entries.c.value)),
        (kind.in_(["true", "false", "null"]), func.json(kind)),
        else_=entries.c.value,
    )
    merged = func.json_group_object(entries.c.key, value)
    return select(func.coalesce(merged, "{}")).scalar_subquery()


def graph_named(dialect: str, assistant_id: str) -> ColumnElement[Any]:
    """The thread's metadata naming the graph of a run created on it (`graph_id` and
    `assistant_id`, both the assistant's name here), as the reference server stamps them."""
    if dialect == "postgresql":
        return type_coerce(Thread.metadata_, JSONB).op("||")(
            func.jsonb_build_object("graph_id", assistant_id, "assistant_id", assistant_id)
        )
    return func.json_set(
        Thread.metadata_, "$.graph_id", assistant_id, "$.assistant_id", assistant_id
    )


def ttl_values(ttl: ThreadTtl | None) -> dict[str, Any]:
    return dict(
        ttl_strategy=ttl.strategy.value if ttl is not None else None,
        ttl_minutes=ttl.minutes if ttl is not None else None,
    )


class ThreadStatements(ThreadCopies, ThreadRetention):
    """Creating, reading, searching, counting, updating and deleting threads."""

    def create_thread(
        self,
        thread_id: str,
        user_id: str | None,
        metadata: dict[str, Any],
        *,
        if_exists: str,
        ttl: ThreadTtl | None = None,
    ) -> ThreadRecord:
        """A new thread; if one exists: ThreadExistsError (`raise`), or the existing one
        (`do_nothing`, its ttl unchanged), unless it is another user's (ThreadExistsError:
        it cannot be used)."""
        with self.transaction() as conn:
            row = conn.execute(
                INSERT_THREAD[conn.dialect.name],
                dict(thread_id=thread_id, user_id=user_id, metadata=metadata, **ttl_values(ttl)),
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

    def patch_thread(
        self,
        thread_id: str,
        user_id: str | None,
        metadata: dict[str, Any],
        ttl: ThreadTtl | None,
    ) -> ThreadRecord | None:
        """Merge `metadata` into the thread's (top-level keys), set its ttl if given, and
        touch updated_at, in one guarded UPDATE; None if there is no such thread of this
        user's (None: any user's)."""
        with self.transaction() as conn:
            values: dict[Any, Any] = {Thread.updated_at: db_now()}
            if metadata:
                values[Thread.metadata_] = merged_metadata(conn.dialect.name, metadata)
            if ttl is not None:
                values |= {getattr(Thread, key): value for key, value in ttl_values(ttl).items()}
            query = update(Thread).where(Thread.thread_id == thread_id)
            if user_id is not None:
                query = query.where(Thread.user_id == user_id)
            row = conn.execute(query.values(values).returning(*THREAD_COLUMNS)).first()
        return None if row is None else thread_record(row)

    def name_graph(self, conn: Connection, thread_id: str, assistant_id: str) -> None:
        """Stamp the thread's metadata with the graph of a run created on it while nothing
        was in flight, unless it names that one already (the caller holds the thread lock;
        PostgreSQL's runqueue_create_run does the same)."""
        dialect = conn.dialect.name
        named = {"graph_id": assistant_id, "assistant_id": assistant_id}
        conn.execute(
            update(Thread)
            .where(Thread.thread_id == thread_id, not_(and_(*metadata_contains(dialect, named))))
            .values(metadata_=graph_named(dialect, assistant_id))
        )

    def get_thread(self, thread_id: str, user_id: str | None) -> ThreadView | None:
        views = self.search_threads(user_id=user_id, ids=[thread_id], limit=1)
        return views[0] if views else None

    def _filtered(
        self,
        dialect: str,
        user_id: str | None,
        metadata: dict[str, Any] | None,
        ids: Sequence[str] | None,
    ) -> Select[Any]:
        """The threads a search or count considers, each with its status (thread_status)."""
        status_column = status_expression(dialect).label("thread_status")
        inner = select(*THREAD_COLUMNS, status_column)
        if user_id is not None:
            inner = inner.where(Thread.user_id == user_id)
        if ids is not None:
            inner = inner.where(Thread.thread_id.in_(list(ids)))
        for condition in metadata_contains(dialect, metadata or {}):
            inner = inner.where(condition)
        return inner

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
            threads = self._filtered(conn.dialect.name, user_id, metadata, ids).subquery()
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

    def count_threads(
        self,
        *,
        user_id: str | None,
        metadata: dict[str, Any] | None = None,
        status: ThreadStatus | None = None,
    ) -> int:
        """How many threads search_threads() would find with these filters, unpaged."""
        with self.reading() as conn:
            threads = self._filtered(conn.dialect.name, user_id, metadata, None).subquery()
            query = select(func.count()).select_from(threads)
            if status is not None:
                query = query.where(threads.c.thread_status == status.value)
            return conn.execute(query).scalar_one()

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
            return delete_thread_rows(conn, thread_id)

"""Pruning threads: by request (POST /threads/prune) and when their ttl runs out (the
maintenance pass). `delete` removes a thread with everything of it; `keep_latest` keeps the
thread and its runs but only its latest checkpoint (per checkpoint namespace in LangGraph's
tables, and the latest of a plain assistant's). A thread with a run in flight is never
touched, and each thread is pruned in one transaction under its lock: a run created on it
meanwhile waits, then finds it whole or gone.

A thread expires once idle for its ttl: no update of it, no run created or changed, for
ttl_minutes by the database's clock (last_activity()).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    exists,
    func,
    inspect,
    not_,
    or_,
    select,
    text,
    update,
)

from runqueue.records import PruneStrategy
from runqueue.store.models import CheckpointRow, Run, Thread, WebhookDeliveryRow
from runqueue.store.transactions import IS_INFLIGHT, StoreBase, db_now_plus

# LangGraph's savers keep a thread's graph state under its thread_id (their setup() makes
# these tables; they may be absent where the extra was never installed). `writes` is the
# SQLite saver's, `checkpoint_writes` and `checkpoint_blobs` the PostgreSQL saver's.
GRAPH_STATE_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "writes")
# Checkpoint metadata that marks a thread whose graph uses a DeltaChannel: its latest value
# is rebuilt from older checkpoints, which keep_latest would delete (LangGraph's own prune
# refuses such threads too).
DELTA_MARKERS = ("counters_since_delta_snapshot", "delta_writes_versioned")


class PruneOutcome(enum.StrEnum):
    """What pruning one thread did."""

    pruned = "pruned"  # deleted, or cut to its latest checkpoint
    busy = "busy"  # a run in flight: left as it was
    missing = "missing"  # no such thread (of this user's), or, swept, no longer due
    kept_whole = "kept_whole"  # keep_latest refused: its graph uses a DeltaChannel


@dataclass(frozen=True)
class Pruned:
    """One thread's prune: its outcome, and the runs deleted, whose streams the caller
    deletes after the commit."""

    outcome: PruneOutcome
    run_ids: list[str] = field(default_factory=list)
    strategy: PruneStrategy | None = None  # how it was pruned, if it was


def graph_tables(conn: Connection) -> set[str]:
    """LangGraph's tables that exist in this database."""
    return set(GRAPH_STATE_TABLES) & set(inspect(conn).get_table_names())


def delete_thread_rows(conn: Connection, thread_id: str) -> list[str]:
    """Delete the thread, its runs (their history, plain checkpoints and ledger go with them:
    ON DELETE CASCADE) and its rows in LangGraph's tables; the ids of the runs deleted.
    The caller holds the thread lock and has made sure no run is in flight."""
    run_ids = list(
        conn.execute(delete(Run).where(Run.thread_id == thread_id).returning(Run.run_id)).scalars()
    )
    for table in sorted(graph_tables(conn)):
        conn.execute(text(f"DELETE FROM {table} WHERE thread_id = :t"), {"t": thread_id})
    conn.execute(delete(Thread).where(Thread.thread_id == thread_id))
    return run_ids


def last_activity(dialect: str) -> ColumnElement[Any]:
    """When the thread last changed: its updated_at, or its newest run's, if later (a run's
    updated_at moves at every transition: created, started, ended)."""
    newest_run = (
        select(func.max(Run.updated_at))
        .where(Run.thread_id == Thread.thread_id)
        .correlate(Thread)
        .scalar_subquery()
    )
    if dialect == "postgresql":
        return func.greatest(Thread.updated_at, newest_run)  # NULLs are left out
    return func.max(Thread.updated_at, func.coalesce(newest_run, Thread.updated_at))


def due(dialect: str) -> ColumnElement[bool]:
    """The thread's ttl ran out, it has no run in flight nor a run whose webhook is still to
    be delivered (deleting the run would delete its delivery), and keep_latest has not
    pruned it since its last activity."""
    last = last_activity(dialect)
    return and_(
        Thread.ttl_minutes.is_not(None),
        last <= db_now_plus(-Thread.ttl_minutes * 60),
        or_(Thread.ttl_swept_at.is_(None), Thread.ttl_swept_at < last),
        not_(exists().where(Run.thread_id == Thread.thread_id, IS_INFLIGHT)),
        not_(
            exists().where(
                Run.thread_id == Thread.thread_id,
                WebhookDeliveryRow.run_id == Run.run_id,
                WebhookDeliveryRow.state == "pending",
            )
        ),
    )


def _uses_delta_channel(conn: Connection) -> str:
    """SQL: any checkpoint of :t carries a DeltaChannel marker in its metadata."""
    if conn.dialect.name == "postgresql":
        marked = " OR ".join(f"jsonb_exists(metadata, '{key}')" for key in DELTA_MARKERS)
    else:  # the SQLite saver writes its metadata as JSON bytes
        as_json = "CASE WHEN json_valid(CAST(metadata AS TEXT)) THEN CAST(metadata AS TEXT) END"
        marked = " OR ".join(
            f"json_extract({as_json}, '$.{key}') IS NOT NULL" for key in DELTA_MARKERS
        )
    return f"SELECT 1 FROM checkpoints WHERE thread_id = :t AND ({marked}) LIMIT 1"


def keep_latest_rows(conn: Connection, thread_id: str) -> bool:
    """Cut the thread's state to its latest checkpoint: in LangGraph's tables the latest
    checkpoint of each namespace with its pending writes (and, on PostgreSQL, the blobs it
    references), its parent link cleared; of its plain checkpoints the latest. False, with
    nothing deleted, for a graph that uses a DeltaChannel."""
    tables = graph_tables(conn)
    if "checkpoints" in tables:
        if conn.execute(text(_uses_delta_channel(conn)), {"t": thread_id}).first() is not None:
            return False
        _keep_latest_graph_rows(conn, thread_id, tables)
    latest = conn.execute(
        select(func.max(CheckpointRow.checkpoint_id)).where(CheckpointRow.thread_id == thread_id)
    ).scalar()
    if latest is not None:
        conn.execute(
            delete(CheckpointRow).where(
                CheckpointRow.thread_id == thread_id, CheckpointRow.checkpoint_id < latest
            )
        )
    return True


def _keep_latest_graph_rows(conn: Connection, thread_id: str, tables: set[str]) -> None:
    """keep_latest in LangGraph's tables. Checkpoint ids sort by time (the savers read the
    greatest as the latest)."""
    heads = conn.execute(
        text(
            "SELECT checkpoint_ns, max(checkpoint_id) FROM checkpoints WHERE thread_id = :t "
            "GROUP BY checkpoint_ns"
        ),
        {"t": thread_id},
    ).all()
    writes = [table for table in ("checkpoint_writes", "writes") if table in tables]
    for namespace, head in heads:
        where = "thread_id = :t AND checkpoint_ns = :ns AND checkpoint_id <> :head"
        names = {"t": thread_id, "ns": namespace, "head": head}
        for table in [*writes, "checkpoints"]:
            conn.execute(text(f"DELETE FROM {table} WHERE {where}"), names)
        conn.execute(
            text(
                "UPDATE checkpoints SET parent_checkpoint_id = NULL "
                "WHERE thread_id = :t AND checkpoint_ns = :ns AND checkpoint_id = :head"
            ),
            names,
        )
    for table in writes:  # writes of a namespace with no checkpoint left: orphans
        conn.execute(
            text(
                f"DELETE FROM {table} WHERE thread_id = :t AND NOT EXISTS (SELECT 1 FROM "
                f"checkpoints c WHERE c.thread_id = {table}.thread_id "
                f"AND c.checkpoint_ns = {table}.checkpoint_ns)"
            ),
            {"t": thread_id},
        )
    if "checkpoint_blobs" in tables:  # PostgreSQL: channel values no kept checkpoint names
        conn.execute(
            text(
                "DELETE FROM checkpoint_blobs b WHERE b.thread_id = :t AND NOT EXISTS ("
                "SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id "
                "AND c.checkpoint_ns = b.checkpoint_ns "
                "AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)"
            ),
            {"t": thread_id},
        )


def _mark_swept(conn: Connection, thread_id: str) -> None:
    """The thread is done with until it changes: its ttl_swept_at is the last activity the
    sweep saw, not the time of the sweep, so that a change whose statement began before the
    sweep's commit (blocked on the thread's lock, its updated_at earlier than that commit)
    still makes it due again."""
    conn.execute(
        update(Thread)
        .where(Thread.thread_id == thread_id)
        .values(ttl_swept_at=last_activity(conn.dialect.name))
    )


class ThreadRetention(StoreBase):
    """Pruning threads, one transaction each, and finding those whose ttl ran out."""

    def prune_thread(self, thread_id: str, strategy: PruneStrategy, user_id: str | None) -> Pruned:
        """Prune the thread with `strategy` unless a run of it is in flight."""
        with self.transaction() as conn:
            return self._prune_locked(conn, thread_id, strategy, user_id, expired_only=False)

    def expired_threads(self, limit: int) -> list[str]:
        """Up to `limit` threads whose ttl ran out and that may be pruned now."""
        with self.reading() as conn:
            query = select(Thread.thread_id).where(due(conn.dialect.name)).limit(limit)
            return list(conn.execute(query).scalars())

    def set_aside(self, thread_id: str) -> None:
        """An expired thread whose prune failed: not due again before its next activity (as
        after a keep_latest prune), so that it cannot take a place in every pass's batch and
        hold up the sweep of the others."""
        with self.transaction() as conn:
            _mark_swept(conn, thread_id)

    def sweep_thread(self, thread_id: str) -> Pruned:
        """Prune an expired thread with its ttl's strategy, if it is still due once locked
        (a run created or a PATCH since it was found makes it `missing`)."""
        with self.transaction() as conn:
            strategy = conn.execute(
                select(Thread.ttl_strategy).where(Thread.thread_id == thread_id)
            ).scalar()
            if strategy is None:
                return Pruned(PruneOutcome.missing)
            return self._prune_locked(
                conn, thread_id, PruneStrategy(strategy), None, expired_only=True
            )

    def _prune_locked(
        self,
        conn: Connection,
        thread_id: str,
        strategy: PruneStrategy,
        user_id: str | None,
        *,
        expired_only: bool,
    ) -> Pruned:
        """Lock the thread, check it (owned, idle, due if `expired_only`), then prune it."""
        query = select(Thread.thread_id).where(Thread.thread_id == thread_id)
        if user_id is not None:
            query = query.where(Thread.user_id == user_id)
        if conn.execute(query.with_for_update(key_share=True)).first() is None:
            return Pruned(PruneOutcome.missing)
        busy = select(Run.run_id).where(Run.thread_id == thread_id, IS_INFLIGHT).limit(1)
        if conn.execute(busy).first() is not None:
            return Pruned(PruneOutcome.busy)
        if expired_only:
            still_due = select(Thread.thread_id).where(
                Thread.thread_id == thread_id, due(conn.dialect.name)
            )
            if conn.execute(still_due).first() is None:
                return Pruned(PruneOutcome.missing)
        if strategy is PruneStrategy.delete:
            return Pruned(PruneOutcome.pruned, delete_thread_rows(conn, thread_id), strategy)
        kept = keep_latest_rows(conn, thread_id)
        if expired_only:  # done for this stretch of idleness: due again after new activity
            _mark_swept(conn, thread_id)
        if not kept:
            return Pruned(PruneOutcome.kept_whole)
        return Pruned(PruneOutcome.pruned, strategy=strategy)

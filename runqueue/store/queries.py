"""Read-only queries: runs, threads, history and checkpoints."""

from __future__ import annotations

from sqlalchemy import func, select

from runqueue.records import Checkpoint, RunEvent, RunRecord, RunStatus, ThreadRecord
from runqueue.store.decisions import RunStore
from runqueue.store.models import CheckpointRow, Run, RunEventRow, Thread
from runqueue.store.rows import (
    CHECKPOINT_COLUMNS,
    EVENT_COLUMNS,
    RUN_COLUMNS,
    THREAD_COLUMNS,
    checkpoint,
    run_event,
    run_record,
    thread_record,
)
from runqueue.store.transactions import IS_INFLIGHT


class RunQueries:
    """What callers read; never writes."""

    def __init__(self, store: RunStore):
        self.store = store

    def get(self, run_id: str, user_id: str | None = None) -> RunRecord | None:
        query = select(*RUN_COLUMNS).where(Run.run_id == run_id)
        if user_id is not None:
            query = query.where(Run.user_id == user_id)
        with self.store.transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else run_record(row)

    def list_by_thread(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Newest first; run ids (time-ordered) break timestamp ties, so the order is stable."""
        query = select(*RUN_COLUMNS).where(Run.thread_id == thread_id)
        if user_id is not None:
            query = query.where(Run.user_id == user_id)
        if status is not None:
            query = query.where(Run.status == status.value)
        query = query.order_by(Run.created_at.desc(), Run.run_id.desc()).limit(limit).offset(offset)
        with self.store.transaction() as conn:
            return [run_record(row) for row in conn.execute(query)]

    def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        query = select(*RUN_COLUMNS)
        if thread_id is not None:
            query = query.where(Run.thread_id == thread_id)
        if status is not None:
            query = query.where(Run.status == status.value)
        query = query.order_by(Run.created_at.desc(), Run.run_id.desc()).limit(limit)
        with self.store.transaction() as conn:
            return [run_record(row) for row in conn.execute(query)]

    def run_ids_with_prefix(self, prefix: str, limit: int = 3) -> list[str]:
        """Up to `limit` run ids starting with `prefix` (lower-case hex and hyphens), in id
        order: one means the prefix names a run, more that it is ambiguous."""
        query = (
            select(Run.run_id)
            .where(Run.run_id.like(f"{prefix}%"))
            .order_by(Run.run_id)
            .limit(limit)
        )
        with self.store.reading() as conn:
            return list(conn.execute(query).scalars())

    def run_ids_sharing_prefixes(self, prefixes: set[str], length: int) -> list[str]:
        """Every run id whose first `length` characters are one of `prefixes`: the ids that
        a shortened id could be confused with."""
        if not prefixes:
            return []
        head = func.substr(Run.run_id, 1, length)
        with self.store.reading() as conn:
            return list(
                conn.execute(select(Run.run_id).where(head.in_(sorted(prefixes)))).scalars()
            )

    def has_inflight(self, thread_id: str) -> bool:
        query = select(Run.run_id).where(Run.thread_id == thread_id, IS_INFLIGHT).limit(1)
        with self.store.transaction() as conn:
            return conn.execute(query).first() is not None

    def count_inflight_of_user(self, user_id: str | None, limit: int) -> int:
        """How many of the user's runs are pending or running, counted up to `limit` (the
        caller only asks whether the bound is reached: no need to count further)."""
        user = Run.user_id.is_(None) if user_id is None else Run.user_id == user_id
        inflight = select(Run.run_id).where(user, IS_INFLIGHT).limit(limit)
        with self.store.reading() as conn:
            return conn.execute(select(func.count()).select_from(inflight.subquery())).scalar()

    def events(self, run_id: str) -> list[RunEvent]:
        query = (
            select(*EVENT_COLUMNS)
            .where(RunEventRow.run_id == run_id)
            .order_by(RunEventRow.event_id)
        )
        with self.store.transaction() as conn:
            return [run_event(row) for row in conn.execute(query)]

    def threads(self, limit: int = 100) -> list[tuple[ThreadRecord, dict[str, int]]]:
        """Threads, newest first, with how many runs each has in every status."""
        with self.store.transaction() as conn:
            threads = [
                thread_record(row)
                for row in conn.execute(
                    select(*THREAD_COLUMNS).order_by(Thread.updated_at.desc()).limit(limit)
                )
            ]
            counts: dict[str, dict[str, int]] = {t.thread_id: {} for t in threads}
            if threads:
                rows = conn.execute(
                    select(Run.thread_id, Run.status, func.count())
                    .where(Run.thread_id.in_(list(counts)))
                    .group_by(Run.thread_id, Run.status)
                )
                for thread_id, status, count in rows:
                    counts[thread_id][status] = count
        return [(t, counts[t.thread_id]) for t in threads]

    def checkpoint_history(
        self,
        thread_id: str,
        *,
        limit: int,
        before: int | None = None,
        run_id: str | None = None,
        checkpoint_id: int | None = None,
    ) -> list[tuple[Checkpoint, int | None]]:
        """The thread's plain checkpoints newest first, each with the id of the one before it
        in the thread (its parent; None for the first): at most `limit`, older than `before`,
        written by `run_id`, or only `checkpoint_id`."""
        older = CheckpointRow.__table__.alias("older")
        parent = (
            select(func.max(older.c.checkpoint_id))
            .where(
                older.c.thread_id == CheckpointRow.thread_id,
                older.c.checkpoint_id < CheckpointRow.checkpoint_id,
            )
            .scalar_subquery()
        )
        query = select(*CHECKPOINT_COLUMNS, parent.label("parent_id")).where(
            CheckpointRow.thread_id == thread_id
        )
        if before is not None:
            query = query.where(CheckpointRow.checkpoint_id < before)
        if run_id is not None:
            query = query.where(CheckpointRow.run_id == run_id)
        if checkpoint_id is not None:
            query = query.where(CheckpointRow.checkpoint_id == checkpoint_id)
        query = query.order_by(CheckpointRow.checkpoint_id.desc()).limit(limit)
        with self.store.reading() as conn:
            return [(checkpoint(row), row.parent_id) for row in conn.execute(query)]

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        query = (
            select(*CHECKPOINT_COLUMNS)
            .where(CheckpointRow.thread_id == thread_id)
            .order_by(CheckpointRow.checkpoint_id)
        )
        with self.store.transaction() as conn:
            return [checkpoint(row) for row in conn.execute(query)]

"""The store's foundation: one database URL, its transactions, and the thread lock.

Transactions that touch more than one run of a thread first lock the thread row
(SELECT ... FOR UPDATE on PostgreSQL; on SQLite every transaction is BEGIN IMMEDIATE),
always thread first, then runs, so they cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError

from runqueue.database import get_engine
from runqueue.errors import DatabaseUnavailableError
from runqueue.models import Run, RunEventRow, Thread
from runqueue.records import DispatchState, RunStatus
from runqueue.rows import RUN_COLUMNS, run_record
from runqueue.settings import redact_url

logger = logging.getLogger(__name__)

PENDING = RunStatus.pending.value
RUNNING = RunStatus.running.value
INFLIGHT = (PENDING, RUNNING)
HELD = DispatchState.held.value
QUEUED = DispatchState.queued.value
MAX_REPUBLISH_BACKOFF = 3600.0  # seconds


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """A database URL and the helpers every group of statements shares."""

    def __init__(self, database_url: str, republish_after: float = 30.0):
        self.database_url = database_url
        self.republish_after = republish_after

    def _next_publish(self, now: datetime, published: int) -> datetime:
        """When the relay publishes a still-unclaimed queued run again: republish_after, then
        doubling with every publish, so a long backlog is not flooded with copies."""
        backoff = min(self.republish_after * 2**published, MAX_REPUBLISH_BACKOFF)
        return now + timedelta(seconds=backoff)

    @property
    def engine(self):  # noqa: ANN201
        return get_engine(self.database_url)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; an unreachable database becomes DatabaseUnavailableError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, SAInterfaceError) as exc:
            raise DatabaseUnavailableError(
                f"database unavailable ({redact_url(self.database_url)}): "
                f"{_first_line(exc.orig or exc)}"
            ) from exc

    def lock_thread(self, conn: Connection, thread_id: str, user_id: str | None) -> None:
        """Create the thread if needed and hold its row lock until the transaction ends."""
        now = utcnow()
        values = dict(
            thread_id=thread_id, user_id=user_id, metadata_={}, created_at=now, updated_at=now
        )
        if conn.dialect.name == "postgresql":
            stmt = pg_insert(Thread).values(**values).on_conflict_do_nothing()
        else:
            stmt = sqlite_insert(Thread).values(**values).on_conflict_do_nothing()
        conn.execute(stmt)
        self._lock_existing_thread(conn, thread_id)

    def _lock_existing_thread(self, conn: Connection, thread_id: str) -> None:
        # On SQLite the transaction's BEGIN IMMEDIATE already holds the database write lock.
        # FOR NO KEY UPDATE, not FOR UPDATE: a checkpoint insert's foreign-key check takes
        # KEY SHARE on this row while it holds its run row; FOR UPDATE would wait for it
        # while that insert waits for us (a deadlock seen with rollback vs. checkpoint).
        if conn.dialect.name == "postgresql":
            conn.execute(
                select(Thread.thread_id)
                .where(Thread.thread_id == thread_id)
                .with_for_update(key_share=True)
            )

    def _lock_thread_of(
        self, conn: Connection, run_id: str, user_id: str | None = None
    ) -> str | None:
        """Lock the thread a run belongs to (a run never changes thread); None: no such run."""
        query = select(Run.thread_id).where(Run.run_id == run_id)
        if user_id is not None:
            query = query.where(Run.user_id == user_id)
        thread_id = conn.execute(query).scalar()
        if thread_id is not None:
            self._lock_existing_thread(conn, thread_id)
        return thread_id

    def _thread_busy(self, conn: Connection, thread_id: str) -> bool:
        """True if a run of the thread is running or queued to start: newcomers wait."""
        return bool(
            conn.execute(
                select(Run.run_id)
                .where(
                    Run.thread_id == thread_id,
                    (Run.status == RUNNING)
                    | and_(Run.status == PENDING, Run.dispatch_state == QUEUED),
                )
                .limit(1)
            ).first()
        )

    def _fetch(self, conn: Connection, run_id: str) -> Any:
        row = conn.execute(select(*RUN_COLUMNS).where(Run.run_id == run_id)).first()
        return None if row is None else run_record(row)

    def _record_event(
        self,
        conn: Connection,
        run_id: str,
        thread_id: str,
        status: RunStatus,
        at: datetime,
        worker: str | None,
        detail: str | None = None,
    ) -> None:
        conn.execute(
            insert(RunEventRow).values(
                run_id=run_id,
                thread_id=thread_id,
                status=status.value,
                at=at,
                worker=worker,
                detail=detail,
            )
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

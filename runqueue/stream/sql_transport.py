"""Run streams in the project's database: the embedded default (SQLite), or any deployment
whose broker is not Redis.

The head row (run_streams) is the fence: every append is one guarded UPDATE of it that takes
the next number only if the token owns the stream and it has not ended, then the INSERT of
the event, in one transaction. Readers poll (Settings.stream_poll_interval): SQLite has no
notification to wait on. Retention is an expiry on the head row; readers treat an expired
stream as gone at once, and the maintenance pass deletes it.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractContextManager

from sqlalchemy import Connection, and_, delete, exists, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.store.models import Run, RunStreamEventRow, RunStreamRow
from runqueue.store.transactions import StoreBase, db_now, db_now_plus
from runqueue.stream.transport import (
    Appended,
    AppendOutcome,
    AsyncReader,
    Entry,
    StreamTransport,
)

INSERT_EVENT = insert(RunStreamEventRow.__table__)
DIALECT_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}
TRIM_EVERY = 256  # appends between two trims of a stream to its cap


class SqlStreamTransport(StreamTransport):
    """Run streams in the database at `url` (the one the runs live in)."""

    def __init__(
        self,
        url: str,
        *,
        retention_seconds: float,
        max_events: int,
        poll_interval: float = 0.05,
        pool_size: int = 15,
    ):
        super().__init__(url, retention_seconds=retention_seconds, max_events=max_events)
        self.poll_interval = poll_interval
        # Transactions, with an unreachable database as an error; the process's one engine
        # for the URL, so whichever is made first, the pool is the one settings size.
        self._store = StoreBase(url, pool_size=pool_size)

    def _transaction(self) -> AbstractContextManager[Connection]:
        return self._store.transaction()

    def _alive(self):  # noqa: ANN202
        """The head row is not past its retention (by the database's clock, which wrote it)."""
        return or_(RunStreamRow.expires_at.is_(None), RunStreamRow.expires_at > db_now())

    def _take(self, conn: Connection, run_id: str, count: int, *guard) -> int | None:  # noqa: ANN002
        """Reserve `count` numbers on the head row, if `guard` holds; the last one, or None."""
        return conn.execute(
            update(RunStreamRow)
            .where(RunStreamRow.run_id == run_id, RunStreamRow.ended_status.is_(None), *guard)
            .values(last_seq=RunStreamRow.last_seq + count)
            .returning(RunStreamRow.last_seq)
        ).scalar()

    def _write(self, conn: Connection, run_id: str, last: int, entries: list[tuple[str, str]]):  # noqa: ANN202
        first = last - len(entries) + 1
        conn.execute(
            INSERT_EVENT,
            [
                dict(run_id=run_id, seq=first + i, event=event, data=data)
                for i, (event, data) in enumerate(entries)
            ],
        )
        if last % TRIM_EVERY < len(entries) or entries[-1][0] == "end":
            conn.execute(
                delete(RunStreamEventRow).where(
                    RunStreamEventRow.run_id == run_id,
                    RunStreamEventRow.seq <= last - self.max_events,
                )
            )

    def _refusal(self, conn: Connection, run_id: str) -> AppendOutcome:
        """Why the guarded UPDATE of the head matched nothing, read in its transaction."""
        head = conn.execute(
            select(RunStreamRow.ended_status).where(RunStreamRow.run_id == run_id)
        ).first()
        if head is None:
            return AppendOutcome.missing
        return AppendOutcome.ended if head.ended_status is not None else AppendOutcome.not_owner

    def _ensure_head(self, conn: Connection) -> object:
        """INSERT of a head row that does nothing if the stream exists."""
        return DIALECT_INSERT[conn.dialect.name](RunStreamRow.__table__).on_conflict_do_nothing(
            index_elements=[RunStreamRow.run_id]
        )

    def open(self, run_id: str, token: str, attempt: int, event: str, data: str) -> Appended:
        with self._transaction() as conn:
            conn.execute(self._ensure_head(conn), dict(run_id=run_id, last_seq=0, owner_attempt=0))
            last = conn.execute(
                update(RunStreamRow)
                .where(
                    RunStreamRow.run_id == run_id,
                    RunStreamRow.ended_status.is_(None),
                    RunStreamRow.owner_attempt < attempt,
                )
                .values(
                    last_seq=RunStreamRow.last_seq + 1, owner_token=token, owner_attempt=attempt
                )
                .returning(RunStreamRow.last_seq)
            ).scalar()
            if last is None:
                return Appended(self._refusal(conn, run_id))
            self._write(conn, run_id, last, [(event, data)])
        return Appended(AppendOutcome.appended, last)

    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        with self._transaction() as conn:
            last = self._take(conn, run_id, len(entries), RunStreamRow.owner_token == token)
            if last is None:
                return Appended(self._refusal(conn, run_id))
            self._write(conn, run_id, last, entries)
        return Appended(AppendOutcome.appended, last)

    def seal(
        self, run_id: str, status: str, entries: list[tuple[str, str]], *, create: bool
    ) -> bool:
        with self._transaction() as conn:
            if create:
                conn.execute(
                    self._ensure_head(conn), dict(run_id=run_id, last_seq=0, owner_attempt=0)
                )
            last = conn.execute(
                update(RunStreamRow)
                .where(RunStreamRow.run_id == run_id, RunStreamRow.ended_status.is_(None))
                .values(
                    last_seq=RunStreamRow.last_seq + len(entries),
                    ended_status=status,
                    expires_at=db_now_plus(self.retention_seconds),
                )
                .returning(RunStreamRow.last_seq)
            ).scalar()
            if last is None:
                return False
            self._write(conn, run_id, last, entries)
        return True

    def _read_now(self, run_id: str, after: int, count: int) -> list[Entry]:
        with self._store.reading() as conn:
            rows = conn.execute(
                select(RunStreamEventRow.seq, RunStreamEventRow.event, RunStreamEventRow.data)
                .join(RunStreamRow, RunStreamRow.run_id == RunStreamEventRow.run_id)
                .where(
                    and_(RunStreamEventRow.run_id == run_id, RunStreamEventRow.seq > after),
                    self._alive(),
                )
                .order_by(RunStreamEventRow.seq)
                .limit(count)
            ).all()
        return [Entry(seq=row.seq, event=row.event, data=row.data) for row in rows]

    def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        deadline = time.monotonic() + block
        while True:
            entries = self._read_now(run_id, after, count)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            time.sleep(min(self.poll_interval, remaining))

    def async_reader(self) -> AsyncReader:
        return SqlAsyncReader(self)

    def last_seq(self, run_id: str) -> int | None:
        with self._store.reading() as conn:
            return conn.execute(
                select(RunStreamRow.last_seq).where(RunStreamRow.run_id == run_id, self._alive())
            ).scalar()

    def delete(self, run_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(delete(RunStreamEventRow).where(RunStreamEventRow.run_id == run_id))
            conn.execute(delete(RunStreamRow).where(RunStreamRow.run_id == run_id))

    def purge_expired(self) -> int:
        """Delete streams past their retention, and streams that never got their `end` (the
        writer died between the final status and the stream, and nobody read it since)
        once their run has been final for longer than the retention, or was deleted."""
        retained_since = db_now_plus(-self.retention_seconds)
        run_still_needs_it = exists().where(
            Run.run_id == RunStreamRow.run_id,
            or_(Run.ended_at.is_(None), Run.ended_at > retained_since),
        )
        gone = or_(
            RunStreamRow.expires_at <= db_now(),
            and_(RunStreamRow.ended_status.is_(None), ~run_still_needs_it),
        )
        with self._transaction() as conn:
            expired = select(RunStreamRow.run_id).where(gone)
            conn.execute(delete(RunStreamEventRow).where(RunStreamEventRow.run_id.in_(expired)))
            return conn.execute(delete(RunStreamRow).where(gone)).rowcount


class SqlAsyncReader(AsyncReader):
    """Polls in a worker thread, sleeping on the event loop between looks."""

    def __init__(self, transport: SqlStreamTransport):
        self.transport = transport

    async def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        deadline = time.monotonic() + block
        while True:
            entries = await asyncio.to_thread(self.transport._read_now, run_id, after, count)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            await asyncio.sleep(min(self.transport.poll_interval, remaining))

"""The run stream's rows, for the database transport (runqueue.stream.sql_transport): the head
row (run_streams) is the fence, and every write is one guarded UPDATE of it that takes the
next numbers only if the writer owns the stream and it has not ended, then the INSERT of the
events, in one transaction."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, and_, delete, exists, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.store.models import Run, RunStreamEventRow, RunStreamRow
from runqueue.store.transactions import StoreBase, db_now, db_now_plus

INSERT_EVENT = insert(RunStreamEventRow.__table__)
DIALECT_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}
TRIM_EVERY = 256  # appends between two trims of a stream to its cap

StreamEntryRow = tuple[int, str, str]  # (seq, event, data)


class StreamRefusal(enum.Enum):
    """Why a guarded write of the head row matched nothing."""

    missing = "missing"  # no stream
    ended = "ended"  # the stream has its end
    not_owner = "not_owner"  # another attempt owns it


def _alive() -> ColumnElement[bool]:
    """The head row is not past its retention (by the database's clock, which wrote it)."""
    return or_(RunStreamRow.expires_at.is_(None), RunStreamRow.expires_at > db_now())


class StreamRows(StoreBase):
    """The stream tables of one database; `max_events`: the cap each stream is trimmed to."""

    def __init__(self, database_url: str, *, max_events: int, pool_size: int = 15):
        super().__init__(database_url, pool_size=pool_size)
        self.max_events = max_events

    def open(
        self, run_id: str, token: str, attempt: int, entry: tuple[str, str]
    ) -> int | StreamRefusal:
        """Make the stream this attempt's (a later attempt than its owner), writing `entry`;
        its number, or why not."""
        with self.transaction() as conn:
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
                return self._refusal(conn, run_id)
            self._write(conn, run_id, last, [entry])
        return last

    def append(
        self, run_id: str, token: str, entries: list[tuple[str, str]]
    ) -> int | StreamRefusal:
        """Append if `token` owns the stream; the last number, or why not."""
        with self.transaction() as conn:
            last = self._take(conn, run_id, len(entries), RunStreamRow.owner_token == token)
            if last is None:
                return self._refusal(conn, run_id)
            self._write(conn, run_id, last, entries)
        return last

    def seal(
        self,
        run_id: str,
        status: str,
        entries: list[tuple[str, str]],
        *,
        create: bool,
        retention_seconds: float,
    ) -> bool:
        """Write the stream's last entries and end it, whoever owns it; False if it had
        ended (or is missing, unless `create`)."""
        with self.transaction() as conn:
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
                    expires_at=db_now_plus(retention_seconds),
                )
                .returning(RunStreamRow.last_seq)
            ).scalar()
            if last is None:
                return False
            self._write(conn, run_id, last, entries)
        return True

    def entries(self, run_id: str, after: int, count: int) -> Sequence[StreamEntryRow]:
        """Up to `count` entries numbered above `after`, of a stream within its retention."""
        with self.reading() as conn:
            rows = conn.execute(
                select(RunStreamEventRow.seq, RunStreamEventRow.event, RunStreamEventRow.data)
                .join(RunStreamRow, RunStreamRow.run_id == RunStreamEventRow.run_id)
                .where(
                    and_(RunStreamEventRow.run_id == run_id, RunStreamEventRow.seq > after),
                    _alive(),
                )
                .order_by(RunStreamEventRow.seq)
                .limit(count)
            ).all()
        return [(row.seq, row.event, row.data) for row in rows]

    def last_seq(self, run_id: str) -> int | None:
        """The stream's newest number; None if it has none, or is past its retention."""
        with self.reading() as conn:
            return conn.execute(
                select(RunStreamRow.last_seq).where(RunStreamRow.run_id == run_id, _alive())
            ).scalar()

    def delete(self, run_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(RunStreamEventRow).where(RunStreamEventRow.run_id == run_id))
            conn.execute(delete(RunStreamRow).where(RunStreamRow.run_id == run_id))

    def purge_expired(self, retention_seconds: float) -> int:
        """Delete streams past their retention, and streams that never got their `end` (the
        writer died between the final status and the stream, and nobody read it since)
        once their run has been final for longer than the retention, or was deleted."""
        retained_since = db_now_plus(-retention_seconds)
        run_still_needs_it = exists().where(
            Run.run_id == RunStreamRow.run_id,
            or_(Run.ended_at.is_(None), Run.ended_at > retained_since),
        )
        gone = or_(
            RunStreamRow.expires_at <= db_now(),
            and_(RunStreamRow.ended_status.is_(None), ~run_still_needs_it),
        )
        with self.transaction() as conn:
            expired = select(RunStreamRow.run_id).where(gone)
            conn.execute(delete(RunStreamEventRow).where(RunStreamEventRow.run_id.in_(expired)))
            return conn.execute(delete(RunStreamRow).where(gone)).rowcount

    def _take(self, conn: Connection, run_id: str, count: int, *guard) -> int | None:  # noqa: ANN002
        """Reserve `count` numbers on the head row, if `guard` holds; the last one, or None."""
        return conn.execute(
            update(RunStreamRow)
            .where(RunStreamRow.run_id == run_id, RunStreamRow.ended_status.is_(None), *guard)
            .values(last_seq=RunStreamRow.last_seq + count)
            .returning(RunStreamRow.last_seq)
        ).scalar()

    def _write(
        self, conn: Connection, run_id: str, last: int, entries: list[tuple[str, str]]
    ) -> None:
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

    def _refusal(self, conn: Connection, run_id: str) -> StreamRefusal:
        """Why the guarded UPDATE of the head matched nothing, read in its transaction."""
        head = conn.execute(
            select(RunStreamRow.ended_status).where(RunStreamRow.run_id == run_id)
        ).first()
        if head is None:
            return StreamRefusal.missing
        return StreamRefusal.ended if head.ended_status is not None else StreamRefusal.not_owner

    def _ensure_head(self, conn: Connection) -> object:
        """INSERT of a head row that does nothing if the stream exists."""
        return DIALECT_INSERT[conn.dialect.name](RunStreamRow.__table__).on_conflict_do_nothing(
            index_elements=[RunStreamRow.run_id]
        )

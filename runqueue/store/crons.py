"""Crons on their own: created, read, searched, counted, changed, deleted. A cron's
next_fire_at (its next tick, by the database's clock) is computed here whenever its schedule,
timezone, end_time or enabled change; firing it is cron_fires.py's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from runqueue.records import CronCompletion, CronRecord, MultitaskStrategy
from runqueue.store.cron_schedules import next_tick, utc
from runqueue.store.models import CronRow
from runqueue.store.rows import aware
from runqueue.store.threads import metadata_contains
from runqueue.store.transactions import StoreBase, db_now

CRON_COLUMNS = tuple(CronRow.__table__.columns)
CRON_SORT_KEYS = ("cron_id", "assistant_id", "thread_id", "created_at", "updated_at",
                  "next_run_date", "end_time")  # fmt: skip


@dataclass(frozen=True)
class NewCron:
    """A checked request for a cron, before it is written."""

    cron_id: str
    assistant_id: str
    thread_id: str | None
    user_id: str | None
    schedule: str
    timezone: str | None
    end_time: datetime | None
    enabled: bool
    on_run_completed: str | None
    payload: dict[str, Any]
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    multitask_strategy: str | None
    webhook: str | None


def cron_record(row: Row[Any] | Mapping[str, Any]) -> CronRecord:
    m = row._mapping if isinstance(row, Row) else row
    completion, strategy = m["on_run_completed"], m["multitask_strategy"]
    return CronRecord(
        cron_id=m["cron_id"],
        assistant_id=m["assistant_id"],
        thread_id=m["thread_id"],
        user_id=m["user_id"],
        schedule=m["schedule"],
        timezone=m["timezone"],
        end_time=aware(m["end_time"]),
        enabled=bool(m["enabled"]),
        on_run_completed=CronCompletion(completion) if completion else None,
        payload=m["payload"] or {},
        kwargs=m["kwargs"] or {},
        metadata=m["metadata"] or {},
        multitask_strategy=MultitaskStrategy(strategy) if strategy else None,
        webhook=m["webhook"],
        next_run_date=aware(m["next_fire_at"]),
        created_at=aware(m["created_at"]),
        updated_at=aware(m["updated_at"]),
    )


def first_tick(
    schedule: str, timezone: str | None, end_time: datetime | None, now: datetime
) -> datetime | None:
    """The tick a cron fires first from `now`: the schedule's next, None past end_time."""
    tick = next_tick(schedule, timezone, now)
    return None if end_time is not None and tick > utc(end_time) else tick


# The changes that move a cron's next tick: recomputed from now when one of them is given.
RESCHEDULING = frozenset({"schedule", "timezone", "end_time", "enabled"})


class CronStatements(StoreBase):
    """The crons table's statements (user_id None: any user's, as the library sees them)."""

    def _db_now(self, conn: Connection) -> datetime:
        return utc(conn.execute(select(db_now())).scalar_one())

    def create_cron(self, new: NewCron) -> CronRecord:
        """Record a cron with its first tick; ThreadNotFoundError if its thread does not
        exist or is another user's."""
        with self.transaction() as conn:
            if new.thread_id is not None:
                self.lock_thread(conn, new.thread_id, new.user_id, create=False, owned=True)
            tick = first_tick(new.schedule, new.timezone, new.end_time, self._db_now(conn))
            values = {k: v for k, v in vars(new).items() if k != "metadata"}
            row = conn.execute(
                insert(CronRow)
                .values(
                    **values,
                    metadata_=new.metadata,
                    next_fire_at=tick,
                    created_at=db_now(),
                    updated_at=db_now(),
                )
                .returning(*CRON_COLUMNS)
            ).one()
        return cron_record(row)

    def _owned(self, cron_id: str, user_id: str | None) -> list[Any]:
        where = [CronRow.cron_id == cron_id]
        if user_id is not None:
            where.append(CronRow.user_id == user_id)
        return where

    def get_cron(self, cron_id: str, user_id: str | None) -> CronRecord | None:
        with self.reading() as conn:
            row = conn.execute(select(*CRON_COLUMNS).where(*self._owned(cron_id, user_id))).first()
        return None if row is None else cron_record(row)

    def _cron_filters(
        self,
        dialect: str,
        user_id: str | None,
        assistant_id: str | None,
        thread_id: str | None,
        enabled: bool | None,
        metadata: dict[str, Any] | None,
    ) -> list[Any]:
        where: list[Any] = []
        for column, value in (
            (CronRow.user_id, user_id),
            (CronRow.assistant_id, assistant_id),
            (CronRow.thread_id, thread_id),
            (CronRow.enabled, enabled),
        ):
            if value is not None:
                where.append(column == value)
        return where + metadata_contains(dialect, metadata or {}, CronRow.metadata_)

    def search_crons(
        self,
        *,
        user_id: str | None,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[CronRecord]:
        """Crons matching every filter given, newest first unless sort_by/descending say
        otherwise (one of CRON_SORT_KEYS; ties by cron id)."""
        column = "next_fire_at" if sort_by == "next_run_date" else sort_by
        key = CronRow.__table__.c[column]
        order = [key.desc(), CronRow.cron_id.desc()] if descending else [key, CronRow.cron_id]
        with self.reading() as conn:
            where = self._cron_filters(
                conn.dialect.name, user_id, assistant_id, thread_id, enabled, metadata
            )
            query = select(*CRON_COLUMNS).where(*where).order_by(*order)
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [cron_record(row) for row in rows]

    def count_crons(
        self,
        *,
        user_id: str | None,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        with self.reading() as conn:
            where = self._cron_filters(
                conn.dialect.name, user_id, assistant_id, thread_id, None, metadata
            )
            return conn.execute(select(func.count()).select_from(CronRow).where(*where)).scalar()

    def update_cron(
        self, cron_id: str, user_id: str | None, changes: dict[str, Any]
    ) -> CronRecord | None:
        """Apply `changes` (column names; `metadata` too) under the cron's row lock, which a
        firing scheduler holds too: a change commits wholly before or after a fire. Its next
        tick is recomputed from now if the schedule, timezone, end_time or enabled changed.
        None: no such cron of this user's."""
        with self.transaction() as conn:
            row = conn.execute(
                select(*CRON_COLUMNS).where(*self._owned(cron_id, user_id)).with_for_update()
            ).first()
            if row is None:
                return None
            current = dict(row._mapping) | changes
            values = {("metadata_" if k == "metadata" else k): v for k, v in changes.items()}
            if changes.keys() & RESCHEDULING:
                values["next_fire_at"] = first_tick(
                    current["schedule"],
                    current["timezone"],
                    aware(current["end_time"]),
                    self._db_now(conn),
                )
            row = conn.execute(
                update(CronRow)
                .where(CronRow.cron_id == cron_id)
                .values(**values, updated_at=db_now())
                .returning(*CRON_COLUMNS)
            ).one()
        return cron_record(row)

    def delete_cron(self, cron_id: str, user_id: str | None) -> bool:
        """Delete a cron and its fire rows (the runs it made stay); False if none."""
        with self.transaction() as conn:
            deleted = conn.execute(delete(CronRow).where(*self._owned(cron_id, user_id)))
        return deleted.rowcount == 1

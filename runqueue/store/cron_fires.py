"""Firing a cron's tick exactly once across the fleet. Any number of schedulers may race: the
fire row (cron_fires, primary key cron and tick) is inserted in the same transaction as the
run it fires, so a tick is fired with its run, or not at all, and a second scheduler's insert
of the same tick finds the first's row and writes nothing. On PostgreSQL the cron's row is
taken FOR UPDATE SKIP LOCKED first, so racing schedulers share the due crons out instead of
queueing behind each other; on SQLite, BEGIN IMMEDIATE serializes them.

Catch-up: a tick more than `misfire_grace` seconds late (every scheduler was down) is not
fired one by one with the ticks after it: only the latest tick due is fired, once
(docs/operations.md, "Crons")."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue import validation
from runqueue.errors import ConflictError, ThreadNotFoundError
from runqueue.records import CronFire, CronRecord, RunRecord
from runqueue.store.cron_schedules import latest_tick, next_tick, utc
from runqueue.store.crons import CRON_COLUMNS, CronStatements, cron_record
from runqueue.store.effects import Effects, NewRun
from runqueue.store.models import CronFireRow, CronRow, Run, WebhookDeliveryRow
from runqueue.store.rows import aware
from runqueue.store.thread_retention import delete_thread_rows
from runqueue.store.transactions import IS_INFLIGHT, db_now

FIRE_COLUMNS = tuple(CronFireRow.__table__.columns)
CREATED, REFUSED = "created", "refused"
INSERT_FIRE = {
    dialect: insert_for(CronFireRow.__table__)
    .values(fired_at=db_now())
    .on_conflict_do_nothing(index_elements=[CronFireRow.cron_id, CronFireRow.tick])
    .returning(CronFireRow.cron_id)
    for dialect, insert_for in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def cron_fire(row: Row[Any]) -> CronFire:
    m = row._mapping
    return CronFire(
        cron_id=m["cron_id"],
        tick=aware(m["tick"]),
        fired_at=aware(m["fired_at"]),
        thread_id=m["thread_id"],
        run_id=m["run_id"],
        outcome=m["outcome"],
        detail=m["detail"],
    )


def fired_run(cron: CronRecord, run_id: str, thread_id: str) -> NewRun:
    """The run a fire creates: the cron's kwargs, metadata and strategy, its user's, on its
    thread (which must still exist) or on a new one, with the cron's webhook (checked when
    the cron was made or changed). The one place a fired run is made."""
    return NewRun(
        run_id=run_id,
        thread_id=thread_id,
        assistant_id=cron.assistant_id,
        user_id=cron.user_id,
        multitask_strategy=cron.multitask_strategy,
        on_disconnect="continue",
        metadata=dict(cron.metadata),
        kwargs=dict(cron.kwargs),
        follow_up_to_run_id=None,
        create_thread=cron.thread_id is None,
        own_thread=True,
        webhook=cron.webhook,
    )


class CronFireStatements(CronStatements):
    """The scheduler's statements: which crons are due, fire one tick, delete the threads of
    fired runs whose cron says `delete`. RunStore provides _create_in (decisions.py)."""

    def due_crons(self, limit: int) -> list[tuple[str, str | None]]:
        """(cron, its thread) of enabled crons whose next tick is due by the database's
        clock, most overdue first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(CronRow.cron_id, CronRow.thread_id)
                .where(CronRow.enabled, CronRow.next_fire_at <= db_now())
                .order_by(CronRow.next_fire_at)
                .limit(limit)
            ).all()
        return [(row.cron_id, row.thread_id) for row in rows]

    def fire_cron(
        self, cron_id: str, thread_id: str | None, misfire_grace: float
    ) -> tuple[CronFire | None, RunRecord | None, Effects]:
        """Fire the cron's due tick in one transaction: its fire row, its run (the strategy
        applied on a busy thread), its next tick. The fire and its run; None: not due,
        locked by another scheduler, the tick already fired, or the cron's thread gone (no
        run: refused). A thread's cron takes the thread's lock before the cron's row, in
        the order a thread's deletion takes them (the thread, then its crons, cascaded), so
        the two never deadlock."""
        effects = Effects()
        with self.transaction() as conn:
            if thread_id is not None:
                try:
                    self.lock_thread(conn, thread_id, None, create=False)
                except ThreadNotFoundError:
                    return None, None, effects  # deleted: its crons went with it
            row = conn.execute(
                select(*CRON_COLUMNS, db_now().label("now"))
                .where(
                    CronRow.cron_id == cron_id,
                    CronRow.enabled,
                    CronRow.next_fire_at <= db_now(),
                )
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None, None, effects
            fired = self._fire_in(conn, cron_record(row), utc(row.now), misfire_grace, effects)
        return (None, None, effects) if fired is None else (*fired, effects)

    def _fire_in(
        self,
        conn: Connection,
        cron: CronRecord,
        now: datetime,
        misfire_grace: float,
        effects: Effects,
    ) -> tuple[CronFire, RunRecord | None] | None:
        assert cron.next_run_date is not None
        tick = cron.next_run_date
        if tick < now - timedelta(seconds=misfire_grace):
            tick = latest_tick(cron.schedule, cron.timezone, now)  # the catch-up policy
        end = cron.end_time
        following: datetime | None = next_tick(cron.schedule, cron.timezone, tick)
        if end is not None and following is not None and following > end:
            following = None
        conn.execute(
            update(CronRow).where(CronRow.cron_id == cron.cron_id).values(next_fire_at=following)
        )
        if end is not None and tick > end:
            return None
        thread_id = cron.thread_id or str(uuid.uuid4())
        run_id = validation.new_run_id()
        fire = dict(
            cron_id=cron.cron_id, tick=tick, thread_id=thread_id, run_id=run_id, outcome=CREATED
        )
        if conn.execute(INSERT_FIRE[conn.dialect.name], fire).first() is None:
            return None  # another scheduler fired this tick
        run = None
        try:
            with conn.begin_nested():
                new = fired_run(cron, run_id, thread_id)
                run = self._create_in(conn, new, True, effects)  # type: ignore[attr-defined]
        except (ConflictError, ThreadNotFoundError) as refused:
            fire.update(run_id=None, outcome=REFUSED, detail=str(refused))
            conn.execute(
                update(CronFireRow)
                .where(CronFireRow.cron_id == cron.cron_id, CronFireRow.tick == tick)
                .values(run_id=None, outcome=REFUSED, detail=str(refused))
            )
        return CronFire(fired_at=now, **fire), run

    def cron_fires(self, cron_id: str, limit: int = 20) -> list[CronFire]:
        """The cron's latest fires, newest first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(*FIRE_COLUMNS)
                .where(CronFireRow.cron_id == cron_id)
                .order_by(CronFireRow.tick.desc())
                .limit(limit)
            ).all()
        return [cron_fire(row) for row in rows]

    def fire_of_run(self, run_id: str) -> CronFire | None:
        """The fire that created this run: the cron a run records."""
        with self.reading() as conn:
            row = conn.execute(select(*FIRE_COLUMNS).where(CronFireRow.run_id == run_id)).first()
        return None if row is None else cron_fire(row)

    def finished_fire_threads(self, limit: int) -> list[tuple[str, datetime, str]]:
        """(cron, tick, thread) of fires whose cron says on_run_completed `delete`, whose run
        has ended, its webhook (if any) delivered or failed, and whose thread is still there:
        deleting the thread deletes its runs' deliveries, so a pending one waits."""
        with self.reading() as conn:
            rows = conn.execute(
                select(CronFireRow.cron_id, CronFireRow.tick, CronFireRow.thread_id)
                .join(CronRow, CronRow.cron_id == CronFireRow.cron_id)
                .join(Run, Run.run_id == CronFireRow.run_id)
                .where(
                    CronRow.on_run_completed == "delete",
                    CronRow.thread_id.is_(None),
                    ~CronFireRow.thread_deleted,
                    ~IS_INFLIGHT,
                    ~exists().where(
                        WebhookDeliveryRow.run_id == CronFireRow.run_id,
                        WebhookDeliveryRow.state == "pending",
                    ),
                )
                .limit(limit)
            ).all()
        return [(row.cron_id, aware(row.tick), row.thread_id) for row in rows]

    def delete_fire_thread(self, cron_id: str, tick: datetime, thread_id: str) -> list[str]:
        """Delete a finished fire's thread (unless a run is in flight on it again) and mark
        the fire; the ids of the runs deleted, whose streams the caller deletes."""
        with self.transaction() as conn:
            run_ids: list[str] = []
            try:
                self.lock_thread(conn, thread_id, None, create=False)
            except ThreadNotFoundError:
                pass
            else:
                busy = select(Run.run_id).where(Run.thread_id == thread_id, IS_INFLIGHT)
                if conn.execute(busy.limit(1)).first() is not None:
                    return []
                run_ids = delete_thread_rows(conn, thread_id)
            conn.execute(
                update(CronFireRow)
                .where(CronFireRow.cron_id == cron_id, CronFireRow.tick == tick)
                .values(thread_deleted=True)
            )
        return run_ids

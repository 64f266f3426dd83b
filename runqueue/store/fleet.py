"""The fleet's workers in SQL: each registers itself at start, heartbeats from its main process
and marks itself stopped on shutdown; readers ask which live workers serve an assistant.
A worker is live while its heartbeat is younger than `live_seconds` (the run lease)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.errors import SchemaMissingError
from runqueue.records import RunStatus, WorkerRecord
from runqueue.store.models import Deployment, Run, RunEventRow, WorkerRow
from runqueue.store.transactions import (
    PENDING,
    QUEUED,
    StoreBase,
    db_now,
    db_now_plus,
    holds_thread,
)

_UPSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}
GONE_WORKER_KEPT_SECONDS = 7 * 24 * 3600.0  # a stopped worker's row, for `workers` history
UNSERVED_REPUBLISH_MAX_SECONDS = 300.0  # a run no live worker serves is offered this often
WORKER_COLUMNS = tuple(WorkerRow.__table__.columns)


def _worker_record(row) -> WorkerRecord:  # noqa: ANN001 - a Row of WORKER_COLUMNS
    return WorkerRecord(**row._asdict())


class FleetStatements(StoreBase):
    """What workers write about themselves, and what readers ask about the fleet."""

    def register_worker(
        self,
        name: str,
        *,
        pool: str,
        concurrency: int,
        assistants: Sequence[str],
        host: str,
        pid: int,
        unless_live_for: float | None = None,
    ) -> bool:
        """Record (or re-record, for a restarted node of the same name) a starting worker.
        With `unless_live_for` (seconds), a row of the name held by another live process
        (not stopped, heartbeat younger than that, another host or pid) is left alone and
        False returned: the guard is in the upsert, so two workers starting at once under
        one name cannot both take it."""
        values = dict(
            pool=pool,
            concurrency=concurrency,
            assistants=sorted(assistants),
            host=host,
            pid=pid,
            started_at=db_now(),
            heartbeat_at=db_now(),
            stopped_at=None,
        )
        guard = None
        if unless_live_for is not None:
            guard = or_(
                WorkerRow.stopped_at.is_not(None),
                WorkerRow.heartbeat_at < db_now_plus(-unless_live_for),
                and_(WorkerRow.host == host, WorkerRow.pid == pid),
            )
        with self.transaction() as conn:
            stmt = _UPSERT[conn.dialect.name](WorkerRow.__table__).values(name=name, **values)
            upsert = stmt.on_conflict_do_update(
                index_elements=[WorkerRow.name], set_=values, where=guard
            ).returning(WorkerRow.name)  # a row back: written (rowcount is -1 on psycopg)
            return conn.execute(upsert).first() is not None

    def beat_worker(self, name: str) -> bool:
        """The worker's main process is alive; False if it was marked stopped meanwhile."""
        with self.transaction() as conn:
            beaten = conn.execute(
                update(WorkerRow)
                .where(WorkerRow.name == name, WorkerRow.stopped_at.is_(None))
                .values(heartbeat_at=db_now())
            ).rowcount
        return beaten == 1

    def stop_worker(self, name: str, pid: int | None = None) -> None:
        """The worker shut down cleanly: it is no longer live, at once. `pid`: only if the
        row is still this process's (a node name reused by a newer process stays live)."""
        guard = [WorkerRow.name == name, WorkerRow.stopped_at.is_(None)]
        if pid is not None:
            guard.append(WorkerRow.pid == pid)
        with self.transaction() as conn:
            conn.execute(
                update(WorkerRow).where(*guard).values(stopped_at=db_now(), heartbeat_at=db_now())
            )

    def deployment_id(self) -> str:
        """The id this database gave itself at migration: the broker queues are named from it."""
        with self.reading() as conn:
            found = conn.execute(select(Deployment.deployment_id)).scalar()
        if found is None:  # a schema older than 0009, which require_current_schema stops
            raise SchemaMissingError("the database has no deployment id: run `runqueue migrate`")
        return found

    def live_worker_named(self, name: str, live_seconds: float) -> WorkerRecord | None:
        """The live worker (as live_workers() judges it) of this node name, if there is one."""
        since = db_now_plus(-live_seconds)
        with self.reading() as conn:
            row = conn.execute(
                select(*WORKER_COLUMNS).where(
                    WorkerRow.name == name,
                    WorkerRow.stopped_at.is_(None),
                    WorkerRow.heartbeat_at >= since,
                )
            ).first()
        return None if row is None else _worker_record(row)

    def forget_gone_workers(self, after_seconds: float = GONE_WORKER_KEPT_SECONDS) -> int:
        """Delete the rows of workers stopped (or silent) for `after_seconds`: each start of
        `runqueue worker` is a row of its own (its name carries the pid), so rows of past
        processes would pile up. Looks first without the write lock (SQLite)."""
        old = WorkerRow.heartbeat_at < db_now_plus(-after_seconds)  # a live one beats often
        with self.reading() as conn:
            if conn.execute(select(WorkerRow.name).where(old).limit(1)).first() is None:
                return 0
        with self.transaction() as conn:
            return conn.execute(delete(WorkerRow).where(old)).rowcount

    def live_workers(self, live_seconds: float) -> list[WorkerRecord]:
        """Workers not stopped whose heartbeat is younger than `live_seconds`, by name (the
        database's clock wrote the heartbeats, and judges their age)."""
        since = db_now_plus(-live_seconds)
        with self.reading() as conn:
            rows = conn.execute(
                select(*WORKER_COLUMNS)
                .where(WorkerRow.stopped_at.is_(None), WorkerRow.heartbeat_at >= since)
                .order_by(WorkerRow.name)
            ).all()
        return [_worker_record(row) for row in rows]

    def note_on_pending_run(
        self, run_id: str, detail: str, worker: str | None = None, discarded: bool = False
    ) -> bool:
        """Add a line to a pending run's history (why it does not start); False if the run
        is gone or no longer pending. The same line twice in a row is written once.

        `discarded`: its message is gone from the broker (a worker without its assistant
        dropped it), so the relay publishes it again on a backoff capped at
        UNSERVED_REPUBLISH_MAX_SECONDS, not the hour meant for messages that may still sit
        in a backlog: a worker that serves it, started later, gets it within minutes."""
        with self.transaction() as conn:
            run = conn.execute(
                select(Run.thread_id, Run.publish_count).where(
                    Run.run_id == run_id, Run.status == PENDING
                )
            ).first()
            if run is None:
                return False
            if discarded:
                backoff = min(
                    self.republish_after * 2 ** min(max(run.publish_count - 1, 0), 16),
                    UNSERVED_REPUBLISH_MAX_SECONDS,
                )
                conn.execute(
                    update(Run)
                    .where(
                        Run.run_id == run_id, Run.status == PENDING, Run.dispatch_state == QUEUED
                    )
                    .values(next_publish_at=db_now_plus(backoff))
                )
            last = conn.execute(
                select(RunEventRow.detail, RunEventRow.worker)
                .where(RunEventRow.run_id == run_id)
                .order_by(RunEventRow.event_id.desc())
                .limit(1)
            ).first()
            if last is not None and (last.detail, last.worker) == (detail, worker):
                return True
            self._record_event(
                conn,
                run_id=run_id,
                thread_id=run.thread_id,
                status=RunStatus.pending,
                worker=worker,
                detail=detail,
            )
        return True

    def thread_holder(self, run_id: str) -> tuple[str, str] | None:
        """(run_id, status) of the run of the same thread that keeps this one waiting (running,
        or queued to start before it); None if nothing else holds the thread."""
        with self.reading() as conn:
            thread_id = conn.execute(select(Run.thread_id).where(Run.run_id == run_id)).scalar()
            if thread_id is None:
                return None
            inflight = self._inflight(conn, thread_id)
        for row in inflight:
            if row.run_id != run_id and holds_thread(row):
                return row.run_id, row.status
        return None

"""Every SQL statement that changes a run: guarded updates, thread locks, claims.

Each state change is one guarded UPDATE whose row count says whether it won, so a late or
duplicate caller can never move a run out of a final status. Transactions that touch more
than one run of a thread first lock the thread row (SELECT ... FOR UPDATE on PostgreSQL;
on SQLite every transaction is BEGIN IMMEDIATE), always thread first, then runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import aliased

from runqueue.database import get_engine
from runqueue.errors import ConflictError, DatabaseUnavailableError
from runqueue.models import CheckpointRow, Run, RunEventRow, Thread
from runqueue.records import (
    AbortAction,
    DispatchState,
    MultitaskStrategy,
    RunStatus,
)
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


@dataclass(frozen=True)
class NewRun:
    """A validated request for a run, before it is written."""

    run_id: str
    thread_id: str
    assistant_id: str
    user_id: str | None
    multitask_strategy: MultitaskStrategy | None
    on_disconnect: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    follow_up_to_run_id: str | None


@dataclass
class Effects:
    """What must reach the broker once the transaction that decided it has committed."""

    publish: list[Any] = field(default_factory=list)  # RunRecords to publish
    terminate: list[str] = field(default_factory=list)  # run ids to revoke(terminate=True)


@dataclass(frozen=True)
class Claim:
    """The outcome of a worker's attempt to start a run."""

    claimed: bool
    reason: str  # claimed | missing | finished | running | held
    run: Any = None  # RunRecord when claimed


class RunStore:
    """The SQL side of runqueue, bound to one database URL."""

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

    # -- threads --------------------------------------------------------------------------

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
        if conn.dialect.name == "postgresql":
            conn.execute(
                select(Thread.thread_id).where(Thread.thread_id == thread_id).with_for_update()
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

    # -- creating runs --------------------------------------------------------------------

    def create_run(self, new: NewRun, *, check_strategy: bool) -> tuple[Any, Effects]:
        """Apply the thread's strategy and record the run, in one thread-locked transaction."""
        effects = Effects()
        with self.transaction() as conn:
            self.lock_thread(conn, new.thread_id, new.user_id)
            now = utcnow()
            strategy = new.multitask_strategy
            if check_strategy and strategy is not None:
                inflight = conn.execute(
                    select(Run.run_id, Run.status)
                    .where(Run.thread_id == new.thread_id, Run.status.in_(INFLIGHT))
                    .order_by(Run.created_at, Run.run_id)
                ).all()
                if inflight and strategy is MultitaskStrategy.reject:
                    raise ConflictError(
                        f"thread {new.thread_id} already has an active run "
                        f"({inflight[0].run_id}, {inflight[0].status})"
                    )
                if strategy in (MultitaskStrategy.interrupt, MultitaskStrategy.rollback):
                    action = AbortAction(strategy.value)
                    for row in inflight:
                        self._request_cancel(conn, row.run_id, action, now, effects)
            state = HELD if self._thread_busy(conn, new.thread_id) else QUEUED
            conn.execute(
                insert(Run).values(
                    run_id=new.run_id,
                    thread_id=new.thread_id,
                    assistant_id=new.assistant_id,
                    user_id=new.user_id,
                    status=PENDING,
                    multitask_strategy=strategy.value if strategy else None,
                    on_disconnect=new.on_disconnect,
                    metadata_=new.metadata,
                    kwargs=new.kwargs,
                    created_at=now,
                    updated_at=now,
                    follow_up_to_run_id=new.follow_up_to_run_id,
                    dispatch_state=state,
                    dispatched_at=now if state == QUEUED else None,
                    next_publish_at=self._next_publish(now, 0) if state == QUEUED else None,
                    publish_count=0,
                    attempt=0,
                )
            )
            self._record_event(conn, new.run_id, new.thread_id, RunStatus.pending, now, None, state)
            run = self._fetch(conn, new.run_id)
        if state == QUEUED:
            effects.publish.append(run)
        return run, effects

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

    # -- cancelling -----------------------------------------------------------------------

    def cancel_run(
        self, run_id: str, action: AbortAction, user_id: str | None = None
    ) -> tuple[bool, Effects]:
        """Cancel a pending or running run; False if it was already final (or not found)."""
        effects = Effects()
        with self.transaction() as conn:
            thread_id = self._lock_thread_of(conn, run_id, user_id)
            if thread_id is None:
                return False, effects
            now = utcnow()
            cancelled = self._request_cancel(conn, run_id, action, now, effects)
            if cancelled:
                effects.publish.extend(self._advance_thread(conn, thread_id, now))
        return cancelled, effects

    def _request_cancel(
        self, conn: Connection, run_id: str, action: AbortAction, now: datetime, effects: Effects
    ) -> bool:
        """Stop a pending run at once; ask a running one to stop (its process writes the end)."""
        row = conn.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.status == PENDING)
            .values(
                status=RunStatus.interrupted.value,
                abort_action=action.value,
                cancel_requested_at=now,
                ended_at=now,
                updated_at=now,
            )
            .returning(Run.thread_id)
        ).first()
        if row is not None:
            self._record_event(
                conn,
                run_id,
                row.thread_id,
                RunStatus.interrupted,
                now,
                None,
                f"cancelled before start ({action.value})",
            )
        else:
            # Running: the status stays `running` until the process has really stopped, so
            # the thread's next run cannot start while the old one still executes.
            row = conn.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == RUNNING)
                .values(abort_action=action.value, cancel_requested_at=now, updated_at=now)
                .returning(Run.thread_id)
            ).first()
            if row is None:
                return False
            effects.terminate.append(run_id)
        if action is AbortAction.rollback:
            conn.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
        return True

    # -- executing ------------------------------------------------------------------------

    def claim_run(self, run_id: str, worker: str, token: str, lease_seconds: float) -> Claim:
        """pending -> running, only if no other run of the thread is running."""
        for _ in range(3):
            claim = self._try_claim(run_id, worker, token, lease_seconds)
            if claim.reason != "blocked":
                return claim
            if self._hold(run_id):
                return Claim(False, "held")
        return Claim(False, "held")

    def _try_claim(self, run_id: str, worker: str, token: str, lease_seconds: float) -> Claim:
        other = aliased(Run)
        now = utcnow()
        try:
            with self.transaction() as conn:
                row = conn.execute(
                    update(Run)
                    .where(
                        Run.run_id == run_id,
                        Run.status == PENDING,
                        Run.dispatch_state == QUEUED,
                        Run.abort_action.is_(None),
                        ~exists().where(other.thread_id == Run.thread_id, other.status == RUNNING),
                    )
                    .values(
                        status=RUNNING,
                        started_at=now,
                        updated_at=now,
                        worker=worker,
                        claim_token=token,
                        attempt=Run.attempt + 1,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                    .returning(Run.thread_id)
                ).first()
                if row is not None:
                    self._record_event(conn, run_id, row.thread_id, RunStatus.running, now, worker)
                    return Claim(True, "claimed", self._fetch(conn, run_id))
        except IntegrityError:
            # The partial unique index refused a second running run of the thread.
            return Claim(False, "blocked")
        with self.transaction() as conn:
            run = conn.execute(
                select(Run.status, Run.dispatch_state).where(Run.run_id == run_id)
            ).first()
        if run is None:
            return Claim(False, "missing")
        if run.status != PENDING:
            return Claim(False, "running" if run.status == RUNNING else "finished")
        if run.dispatch_state == HELD:
            return Claim(False, "held")
        return Claim(False, "blocked")

    def _hold(self, run_id: str) -> bool:
        """Park a queued run behind the thread's running run; False if nothing runs now."""
        other = aliased(Run)
        with self.transaction() as conn:
            if self._lock_thread_of(conn, run_id) is None:
                return False
            held = conn.execute(
                update(Run)
                .where(
                    Run.run_id == run_id,
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                    exists().where(other.thread_id == Run.thread_id, other.status == RUNNING),
                )
                .values(
                    dispatch_state=HELD,
                    dispatched_at=None,
                    next_publish_at=None,
                    updated_at=utcnow(),
                )
            ).rowcount
        return held == 1

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        token: str | None = None,
        result: Any = None,
        error: str | None = None,
        worker: str | None = None,
        detail: str | None = None,
        from_statuses: Sequence[str] = (RUNNING,),
    ) -> tuple[bool, Effects]:
        """Write a final status, guarded, and release the thread's next run in the same
        transaction. False when the run was already final (a late or duplicate signal)."""
        effects = Effects()
        with self.transaction() as conn:
            thread_id = self._lock_thread_of(conn, run_id)
            if thread_id is None:
                return False, effects
            now = utcnow()
            guard = [Run.run_id == run_id, Run.status.in_(from_statuses)]
            if token is not None:
                guard.append(Run.claim_token == token)
            values: dict[str, Any] = dict(
                status=status.value, ended_at=now, updated_at=now, lease_expires_at=None
            )
            if result is not None:
                values["result"] = result
            if error is not None:
                values["error"] = error
            if worker is not None:
                values["worker"] = worker
            row = conn.execute(
                update(Run).where(*guard).values(**values).returning(Run.abort_action)
            ).first()
            if row is None:
                return False, effects
            self._record_event(conn, run_id, thread_id, status, now, worker, detail or error)
            effects.publish.extend(self._advance_thread(conn, thread_id, now))
        return True, effects

    def _advance_thread(self, conn: Connection, thread_id: str, now: datetime) -> list[Any]:
        """If the thread is free, queue its oldest held run (FIFO). Thread lock required."""
        if self._thread_busy(conn, thread_id):
            return []
        next_run = conn.execute(
            select(Run.run_id)
            .where(Run.thread_id == thread_id, Run.status == PENDING, Run.dispatch_state == HELD)
            .order_by(Run.created_at, Run.run_id)
            .limit(1)
        ).first()
        if next_run is None:
            return []
        conn.execute(
            update(Run)
            .where(Run.run_id == next_run.run_id, Run.dispatch_state == HELD)
            .values(
                dispatch_state=QUEUED,
                dispatched_at=now,
                updated_at=now,
                next_publish_at=self._next_publish(now, 0),
                publish_count=0,
            )
        )
        return [self._fetch(conn, next_run.run_id)]

    def save_checkpoint(self, run_id: str, token: str, values: Any) -> bool:
        """Store thread state for a run that still owns its execution; False once cancelled."""
        with self.transaction() as conn:
            # Lock the run row: a concurrent rollback either sees this checkpoint and deletes
            # it, or commits first and this insert sees the abort and writes nothing.
            owner = conn.execute(
                select(Run.thread_id)
                .where(
                    Run.run_id == run_id,
                    Run.status == RUNNING,
                    Run.claim_token == token,
                    Run.abort_action.is_(None),
                )
                .with_for_update()
            ).first()
            if owner is None:
                return False
            conn.execute(
                insert(CheckpointRow).values(
                    thread_id=owner.thread_id, run_id=run_id, values=values, created_at=utcnow()
                )
            )
        return True

    def renew_lease(self, run_id: str, token: str, lease_seconds: float) -> tuple[bool, str | None]:
        """Extend a running run's lease. Returns (still ours, abort action if cancelled)."""
        now = utcnow()
        with self.transaction() as conn:
            row = conn.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == RUNNING, Run.claim_token == token)
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                .returning(Run.abort_action)
            ).first()
        if row is None:
            return False, None
        return True, row.abort_action

    def requeue_run(
        self,
        run_id: str,
        token: str,
        *,
        publish_at: datetime | None,
        detail: str,
        worker: str | None = None,
    ) -> bool:
        """running -> pending (queued) for another attempt, only by the attempt that holds the
        claim and only if nobody cancelled it. `publish_at` None: the relay sends it now; else
        the caller publishes it (Celery retry) and the relay waits until then."""
        now = utcnow()
        with self.transaction() as conn:
            row = conn.execute(
                update(Run)
                .where(
                    Run.run_id == run_id,
                    Run.status == RUNNING,
                    Run.claim_token == token,
                    Run.abort_action.is_(None),
                )
                .values(
                    status=PENDING,
                    dispatch_state=QUEUED,
                    dispatched_at=publish_at,
                    next_publish_at=self._next_publish(publish_at, 0) if publish_at else now,
                    publish_count=0,
                    claim_token=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .returning(Run.thread_id)
            ).first()
            if row is None:
                return False
            # The thread stays busy (a queued pending run), so its held runs keep waiting.
            self._record_event(conn, run_id, row.thread_id, RunStatus.pending, now, worker, detail)
        return True

    def abort_action(self, run_id: str) -> str | None:
        """The cancel a user asked for, read from the database (broadcasts can be lost)."""
        with self.transaction() as conn:
            return conn.execute(select(Run.abort_action).where(Run.run_id == run_id)).scalar()

    # -- the outbox -------------------------------------------------------------------------

    def mark_unpublished(self, run_id: str) -> None:
        """Record that a publish failed, so the relay sends it again."""
        with self.transaction() as conn:
            conn.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == PENDING, Run.dispatch_state == QUEUED)
                .values(dispatched_at=None, next_publish_at=utcnow())
            )

    def runs_to_publish(self, limit: int = 500) -> list[Any]:
        """Queued runs whose publish failed, or that were published and are still unclaimed
        when their (backed-off) republish time comes: the broker may have lost them."""
        now = utcnow()
        with self.transaction() as conn:
            due = conn.execute(
                select(Run.run_id, Run.publish_count)
                .where(
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                    Run.next_publish_at <= now,
                )
                .order_by(Run.next_publish_at)
                .limit(limit)
            ).all()
            if not due:
                return []
            conn.execute(
                update(Run)
                .where(
                    Run.run_id == bindparam("due_run_id"),
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                )
                .values(
                    dispatched_at=now,
                    publish_count=bindparam("published"),
                    next_publish_at=bindparam("next_publish"),
                ),
                [
                    {
                        "due_run_id": row.run_id,
                        "published": row.publish_count + 1,
                        "next_publish": self._next_publish(now, row.publish_count + 1),
                    }
                    for row in due
                ],
            )
            return [self._fetch(conn, row.run_id) for row in due]

    def expired_leases(self, limit: int = 100) -> list[tuple[str, str]]:
        """(run_id, claim_token) of running runs whose worker stopped renewing."""
        with self.transaction() as conn:
            rows = conn.execute(
                select(Run.run_id, Run.claim_token)
                .where(Run.status == RUNNING, Run.lease_expires_at < utcnow())
                .limit(limit)
            ).all()
        return [(row.run_id, row.claim_token) for row in rows]

    # -- helpers --------------------------------------------------------------------------

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

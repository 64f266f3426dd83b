"""The statements a worker makes about the run it executes: claim, hold, checkpoint,
lease, retry. Each is one guarded UPDATE (or a locked INSERT) whose row count says whether
this attempt still owns the run."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from runqueue.records import RunRecord, RunStatus
from runqueue.store import functions
from runqueue.store.models import CheckpointRow, Run
from runqueue.store.rows import RUN_COLUMNS, run_record
from runqueue.store.transactions import (
    HELD,
    PENDING,
    QUEUED,
    RUNNING,
    StoreBase,
    db_now,
    db_now_plus,
)

# "Does the thread of the run being updated have a running run?", correlated to the UPDATE.
# Built once: aliasing the mapped class builds a proxy of every column, on each call.
_OTHER_RUN = aliased(Run, name="other_run")
THREAD_HAS_A_RUNNING_RUN = exists().where(
    _OTHER_RUN.thread_id == Run.thread_id, _OTHER_RUN.status == RUNNING
)


# A run's lease is over once the database's clock reaches lease_expires_at: from then on it
# belongs to the reaper, and the attempt that let it lapse can no longer write (see owned_by).
LEASE_LIVE = Run.lease_expires_at > db_now()
LEASE_OVER = Run.lease_expires_at <= db_now()


def _uncancelled_claim(run_id: str, token: str) -> tuple[ColumnElement[bool], ...]:
    """The run is running under this claim token and nobody cancelled it."""
    return (
        Run.run_id == run_id,
        Run.status == RUNNING,
        Run.claim_token == token,
        Run.abort_action.is_(None),
    )


def owned_by(run_id: str, token: str) -> tuple[ColumnElement[bool], ...]:
    """The run is running under this attempt's claim token, its lease has not run out by
    the database's clock, and nobody cancelled it: what an attempt's own writes
    (checkpoint, re-queue) and its ownership check require."""
    return (*_uncancelled_claim(run_id, token), LEASE_LIVE)


class ClaimOutcome(enum.StrEnum):
    """Why a worker's attempt to start a run did or did not start it."""

    claimed = "claimed"  # pending -> running: this attempt executes the run
    missing = "missing"  # no such run (it was deleted)
    finished = "finished"  # already final: cancelled before it started, or a late duplicate
    running = "running"  # another delivery of the same run executes it now
    held = "held"  # parked behind the running run of its thread; released when that ends
    not_due = "not_due"  # a delayed run before its due time (a stray early delivery)
    blocked = "blocked"  # another run of the thread runs now; claim_run parks it as held


@dataclass(frozen=True)
class Claim:
    """The outcome of a worker's attempt to start a run."""

    outcome: ClaimOutcome
    run: RunRecord | None = None  # when claimed
    values: Any = None  # when claimed: the thread's latest checkpoint values, or None

    @property
    def claimed(self) -> bool:
        return self.outcome is ClaimOutcome.claimed


class ExecutionStatements(StoreBase):
    """What a worker process writes while it executes a run."""

    def claim_run(self, run_id: str, worker: str, token: str, lease_seconds: float) -> Claim:
        """pending -> running, only if no other run of the thread is running; a won claim
        also reads the thread's latest state, in the same transaction."""
        for _ in range(3):
            claim = self._try_claim(run_id, worker, token, lease_seconds)
            if claim.outcome is not ClaimOutcome.blocked:
                return claim
            if self._hold(run_id):
                return Claim(ClaimOutcome.held)
        return Claim(ClaimOutcome.held)

    def _try_claim(self, run_id: str, worker: str, token: str, lease_seconds: float) -> Claim:
        if self.has_functions:
            return self._claim_by_function(run_id, worker, token, lease_seconds)
        try:
            with self.transaction() as conn:
                row = conn.execute(
                    update(Run)
                    .where(
                        Run.run_id == run_id,
                        Run.status == PENDING,
                        Run.dispatch_state == QUEUED,
                        Run.abort_action.is_(None),
                        or_(Run.due_at.is_(None), Run.due_at <= db_now()),
                        ~THREAD_HAS_A_RUNNING_RUN,
                    )
                    .values(
                        status=RUNNING,
                        started_at=db_now(),
                        updated_at=db_now(),
                        worker=worker,
                        claim_token=token,
                        attempt=Run.attempt + 1,
                        lease_expires_at=db_now_plus(lease_seconds),
                    )
                    .returning(*RUN_COLUMNS)
                ).first()
                if row is not None:
                    self._record_event(
                        conn,
                        run_id=run_id,
                        thread_id=row.thread_id,
                        status=RunStatus.running,
                        worker=worker,
                    )
                    values = conn.execute(
                        select(CheckpointRow.values)
                        .where(CheckpointRow.thread_id == row.thread_id)
                        .order_by(CheckpointRow.checkpoint_id.desc())
                        .limit(1)
                    ).scalar()
                    return Claim(ClaimOutcome.claimed, run_record(row), values)
                # Not claimed: say why, from the same transaction.
                run = conn.execute(
                    select(
                        Run.status, Run.dispatch_state, (Run.due_at > db_now()).label("early")
                    ).where(Run.run_id == run_id)
                ).first()
        except IntegrityError:
            # The partial unique index refused a second running run of the thread.
            return Claim(ClaimOutcome.blocked)
        if run is None:
            return Claim(ClaimOutcome.missing)
        if run.status != PENDING:
            return Claim(ClaimOutcome.running if run.status == RUNNING else ClaimOutcome.finished)
        if run.dispatch_state == HELD:
            return Claim(ClaimOutcome.held)
        if run.early:
            return Claim(ClaimOutcome.not_due)
        return Claim(ClaimOutcome.blocked)

    def _claim_by_function(
        self, run_id: str, worker: str, token: str, lease_seconds: float
    ) -> Claim:
        """_try_claim as one call of runqueue_claim_run (PostgreSQL)."""
        try:
            with self.single_statement() as conn:
                row = conn.execute(
                    functions.CLAIM_RUN,
                    dict(run_id=run_id, worker=worker, token=token, lease_seconds=lease_seconds),
                ).one()
        except IntegrityError:
            # The partial unique index refused a second running run of the thread.
            return Claim(ClaimOutcome.blocked)
        outcome = ClaimOutcome(row.outcome)
        if outcome is ClaimOutcome.claimed:
            return Claim(outcome, run_record(row), row.checkpoint_values)
        return Claim(outcome)

    def _hold(self, run_id: str) -> bool:
        """Park a queued run behind the thread's running run; False if nothing runs now."""
        with self.transaction() as conn:
            if self._lock_thread_of(conn, run_id) is None:
                return False
            held = conn.execute(
                update(Run)
                .where(
                    Run.run_id == run_id,
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                    THREAD_HAS_A_RUNNING_RUN,
                )
                .values(
                    dispatch_state=HELD,
                    dispatched_at=None,
                    next_publish_at=None,
                    updated_at=db_now(),
                )
            ).rowcount
        return held == 1

    def save_checkpoint(self, run_id: str, token: str, values: Any) -> bool:
        """Store thread state for a run that still owns its execution; False once cancelled."""
        with self.transaction() as conn:
            # Lock the run row: a concurrent rollback either sees this checkpoint and deletes
            # it, or commits first and this insert sees the abort and writes nothing.
            owner = conn.execute(
                select(Run.thread_id)
                .where(*owned_by(run_id, token))
                .with_for_update(key_share=True)
            ).first()
            if owner is None:
                return False
            conn.execute(
                insert(CheckpointRow).values(
                    thread_id=owner.thread_id, run_id=run_id, values=values, created_at=db_now()
                )
            )
        return True

    def holds_run(self, run_id: str, token: str) -> bool:
        """True while this attempt (token) is the run's running, uncancelled owner, within
        its lease."""
        with self.transaction() as conn:
            owner = conn.execute(select(Run.run_id).where(*owned_by(run_id, token))).first()
        return owner is not None

    def renew_lease(self, run_id: str, token: str, lease_seconds: float) -> tuple[bool, str | None]:
        """Extend a running run's lease to `lease_seconds` from the database's now, only
        while it has not run out: a lapsed lease belongs to the reaper, and renewing it
        would race the reaper's decision. Returns (still ours, abort action if cancelled)."""
        with self.transaction() as conn:
            row = conn.execute(
                update(Run)
                .where(
                    Run.run_id == run_id,
                    Run.status == RUNNING,
                    Run.claim_token == token,
                    LEASE_LIVE,
                )
                .values(lease_expires_at=db_now_plus(lease_seconds))
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
        publish_in: float | None,
        detail: str,
        worker: str | None = None,
        lease_over: bool = False,
    ) -> bool:
        """running -> pending (queued) for another attempt, only by the attempt that holds the
        claim within its lease and only if nobody cancelled it; `lease_over`: by the reaper,
        only once that claim's lease has run out. `publish_in` None: the relay sends it now;
        else the caller publishes it in that many seconds (Celery retry) and the relay waits
        until then, by the database's clock, plus republish_after."""
        guard = (
            (*_uncancelled_claim(run_id, token), LEASE_OVER)
            if lease_over
            else owned_by(run_id, token)
        )
        later = publish_in is not None
        with self.transaction() as conn:
            row = conn.execute(
                update(Run)
                .where(*guard)
                .values(
                    status=PENDING,
                    dispatch_state=QUEUED,
                    dispatched_at=db_now_plus(publish_in) if later else None,
                    next_publish_at=(
                        db_now_plus(publish_in + self._republish_in(0)) if later else db_now()
                    ),
                    publish_count=0,
                    claim_token=None,
                    lease_expires_at=None,
                    updated_at=db_now(),
                    # The reaper's re-queue: the attempt's worker was lost.
                    worker_losses=Run.worker_losses + int(lease_over),
                )
                .returning(Run.thread_id)
            ).first()
            if row is None:
                return False
            # The thread stays busy (a queued pending run), so its held runs keep waiting.
            self._record_event(
                conn,
                run_id=run_id,
                thread_id=row.thread_id,
                status=RunStatus.pending,
                worker=worker,
                detail=detail,
            )
        return True

    def record_lost_delivery(self, run_id: str) -> int | None:
        """A delivery of this queued run lost its pool child before the claim: count it
        against the run. The run's new count of worker losses; None if it is not queued and
        pending (another delivery claimed it, or it ended), so nothing was counted."""
        with self.transaction() as conn:
            return conn.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == PENDING, Run.dispatch_state == QUEUED)
                .values(worker_losses=Run.worker_losses + 1, updated_at=db_now())
                .returning(Run.worker_losses)
            ).scalar()

    def abort_action(self, run_id: str) -> str | None:
        """The cancel a user asked for, read from the database (broadcasts can be lost). A
        read, not a write transaction: on SQLite it must not queue for the write lock."""
        with self.reading() as conn:
            return conn.execute(select(Run.abort_action).where(Run.run_id == run_id)).scalar()

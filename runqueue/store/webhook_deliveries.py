"""The webhook outbox: a run's URL set at create, and its delivery claimed, recorded and read.

The delivery row itself is inserted by the trigger `runs_webhook_outbox` (migration 0012) in
the transaction that writes the run's final status, whoever writes it. A worker claims a due
row with one guarded UPDATE that sets a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the
write lock on SQLite), so two workers never send one delivery at once, and a deliverer that
died leaves a lease that expires: the next claim takes the row again. Every outcome is
written only while the claim's token still holds the row."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, or_, select, update

from runqueue.records import RunRecord
from runqueue.store.effects import NewRun
from runqueue.store.models import Run, WebhookAttemptRow, WebhookDeliveryRow
from runqueue.store.rows import aware
from runqueue.store.transactions import StoreBase, db_now, db_now_plus
from runqueue.webhooks import WebhookAttempt, WebhookDelivery, WebhookState

PENDING = WebhookState.pending.value
DELIVERED = WebhookState.delivered.value
FAILED = WebhookState.failed.value
Delivery = WebhookDeliveryRow.__table__
Attempt = WebhookAttemptRow.__table__


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker may send now: its lease's token proves the claim."""

    run_id: str
    url: str
    attempt: int  # 1 for the first POST
    token: str


def set_webhook(conn: Connection, run_id: str, url: str) -> None:
    """The run's webhook, in the create's transaction (the PostgreSQL create function, which
    another part owns, does not take it)."""
    conn.execute(update(Run).where(Run.run_id == run_id).values(webhook=url))


def with_webhook(conn: Connection, run: RunRecord | None, new: NewRun) -> RunRecord | None:
    """The run the create function answered, with the request's webhook set in the same
    transaction (a no-op without one, or when the function created nothing)."""
    if run is None or new.webhook is None:
        return run
    set_webhook(conn, run.run_id, new.webhook)
    return dataclasses.replace(run, webhook=new.webhook)


class WebhookDeliveries:
    """The statements of the webhook outbox, on a store's database."""

    def __init__(self, store: StoreBase):
        self.store = store

    def claim(self, worker: str, lease_seconds: float, retry_for: float) -> ClaimedDelivery | None:
        """Take the most overdue pending delivery whose lease is free (none, or expired: its
        deliverer died), count the attempt and record it as `sending`; an earlier attempt
        still `sending` was lost with its worker. None: nothing is due. Looked for first in a
        read-only transaction, so an idle poll never takes SQLite's write lock."""
        due = _due()
        with self.store.reading() as conn:
            if conn.execute(select(Delivery.c.run_id).where(due).limit(1)).first() is None:
                return None
        oldest = (
            select(Delivery.c.run_id)
            .where(due)
            .order_by(Delivery.c.next_attempt_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        token = str(uuid.uuid4())
        with self.store.transaction() as conn:
            row = conn.execute(
                update(Delivery)
                .where(Delivery.c.run_id == oldest, due)  # guarded: re-checked under the lock
                .values(
                    lease_token=token,
                    lease_expires_at=db_now_plus(lease_seconds),
                    attempts=Delivery.c.attempts + 1,
                    worker=worker,
                    give_up_at=case(
                        (Delivery.c.give_up_at.is_(None), db_now_plus(retry_for)),
                        else_=Delivery.c.give_up_at,
                    ),
                )
                .returning(Delivery.c.run_id, Delivery.c.url, Delivery.c.attempts)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(Attempt)
                .where(Attempt.c.run_id == row.run_id, Attempt.c.outcome == "sending")
                .values(outcome="lost", error="its worker stopped before an answer")
            )
            conn.execute(
                Attempt.insert().values(
                    run_id=row.run_id,
                    attempt=row.attempts,
                    started_at=db_now(),
                    worker=worker,
                    outcome="sending",
                )
            )
        return ClaimedDelivery(row.run_id, row.url, row.attempts, token)

    def record(
        self,
        claimed: ClaimedDelivery,
        *,
        delivered: bool,
        retry_in: float | None,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
    ) -> WebhookState | None:
        """The attempt's outcome: delivered, another attempt in `retry_in` seconds (failed
        instead once that would pass its give-up time), or failed (retry_in None). Written
        only while the claim holds (None: another worker took the row after our lease ran
        out; its own attempt decides)."""
        if delivered:
            state, next_at = DELIVERED, None
        elif retry_in is None:
            state, next_at = FAILED, None
        else:
            state = case((db_now_plus(retry_in) < Delivery.c.give_up_at, PENDING), else_=FAILED)
            next_at = db_now_plus(retry_in)
        with self.store.transaction() as conn:
            row = conn.execute(
                update(Delivery)
                .where(Delivery.c.run_id == claimed.run_id, Delivery.c.lease_token == claimed.token)
                .values(
                    state=state,
                    next_attempt_at=next_at,
                    lease_token=None,
                    lease_expires_at=None,
                    delivered_at=db_now() if delivered else None,
                    last_error=error,
                )
                .returning(Delivery.c.state)
            ).first()
            outcome = "delivered" if delivered else "failed"
            if row is not None and row.state == PENDING:
                outcome = "retry"
            conn.execute(
                update(Attempt)
                .where(Attempt.c.run_id == claimed.run_id, Attempt.c.attempt == claimed.attempt)
                .values(
                    outcome=outcome if row is not None else "lost",
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
        return WebhookState(row.state) if row is not None else None

    def get(self, run_id: str) -> WebhookDelivery | None:
        """A run's delivery with every attempt, oldest first; None: none is due (no webhook,
        or the run is not final yet)."""
        with self.store.reading() as conn:
            row = conn.execute(select(Delivery).where(Delivery.c.run_id == run_id)).first()
            if row is None:
                return None
            attempts = conn.execute(
                select(Attempt).where(Attempt.c.run_id == run_id).order_by(Attempt.c.attempt)
            ).all()
        return WebhookDelivery(
            run_id=row.run_id,
            url=row.url,
            state=WebhookState(row.state),
            attempts=row.attempts,
            created_at=_aware(row.created_at),
            next_attempt_at=aware(row.next_attempt_at) if row.state == PENDING else None,
            delivered_at=aware(row.delivered_at),
            last_error=row.last_error,
            history=[
                WebhookAttempt(
                    attempt=a.attempt,
                    started_at=_aware(a.started_at),
                    worker=a.worker,
                    outcome=a.outcome,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in attempts
            ],
        )


def _due() -> Any:
    """A pending delivery whose time has come and whose lease is free (none, or expired)."""
    free = or_(Delivery.c.lease_expires_at.is_(None), Delivery.c.lease_expires_at <= db_now())
    return and_(Delivery.c.state == PENDING, Delivery.c.next_attempt_at <= db_now(), free)


def _aware(value: datetime) -> datetime:
    result = aware(value)
    assert result is not None
    return result

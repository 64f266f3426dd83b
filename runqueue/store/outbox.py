"""The outbox: queued runs the broker never got (or lost), and runs whose lease expired.
(Delayed runs not yet published are published by the due-run loop: due_runs.py.)"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from runqueue.records import RunRecord
from runqueue.store.models import Run
from runqueue.store.rows import RUN_COLUMNS, run_record
from runqueue.store.transactions import (
    PENDING,
    QUEUED,
    RUNNING,
    StoreBase,
    db_now,
    db_now_plus,
)


class OutboxStatements(StoreBase):
    """What the relay and the reaper read and mark."""

    def mark_unpublished(self, run_id: str) -> None:
        """Record that a publish failed, so the relay sends it again."""
        with self.transaction() as conn:
            conn.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.status == PENDING, Run.dispatch_state == QUEUED)
                .values(dispatched_at=None, next_publish_at=db_now())
            )

    def runs_to_publish(self, limit: int = 500) -> list[RunRecord]:
        """Queued runs whose publish failed, or that were published and are still unclaimed
        when their (backed-off) republish time comes: the broker may have lost them."""
        with self.transaction() as conn:
            due = conn.execute(
                select(Run.run_id, Run.publish_count)
                .where(
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                    Run.next_publish_at <= db_now(),
                    # A delayed run not yet published is the due-run loop's (due_runs.py),
                    # whose guarded claim publishes it once across the fleet.
                    ~(Run.due_at.is_not(None) & Run.dispatched_at.is_(None)),
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
                    dispatched_at=db_now(),
                    publish_count=bindparam("published"),
                    next_publish_at=db_now_plus(bindparam("republish_in")),
                ),
                [
                    {
                        "due_run_id": row.run_id,
                        "published": row.publish_count + 1,
                        "republish_in": self._republish_in(row.publish_count + 1),
                    }
                    for row in due
                ],
            )
            # One read for the lot (a backlog is hundreds of runs), in the order they fell due.
            ids = [row.run_id for row in due]
            rows = conn.execute(select(*RUN_COLUMNS).where(Run.run_id.in_(ids))).all()
        by_id = {row.run_id: run_record(row) for row in rows}
        return [by_id[run_id] for run_id in ids if run_id in by_id]

    def expired_leases(self, limit: int = 100) -> list[tuple[str, str]]:
        """(run_id, claim_token) of running runs whose worker stopped renewing: their lease
        is over by the database's clock (the one every worker's lease was written with)."""
        with self.transaction() as conn:
            rows = conn.execute(
                select(Run.run_id, Run.claim_token)
                .where(Run.status == RUNNING, Run.lease_expires_at <= db_now())
                .limit(limit)
            ).all()
        return [(row.run_id, row.claim_token) for row in rows]

    def republish_after_broker_loss(self, lost_seconds_ago: float = 0.0) -> int:
        """Make every queued, unclaimed run published before the broker lost its messages (a
        restart without persistence) due now: it would otherwise wait for its republish
        time. Runs published since the loss, `lost_seconds_ago`, are in the broker: left
        alone, as is a run the relay already published again (several workers notice one
        loss). The loss is given as a duration the worker measured on its monotonic clock,
        counted back from the store's own `now`: no worker's wall clock is compared with
        the one that wrote `dispatched_at`. Each run becomes due at its own publish time,
        so the relay sends them again oldest first; one whose message survived still
        executes once (the claim is guarded). Returns how many were marked."""
        lost_at = db_now_plus(-max(lost_seconds_ago, 0.0))
        with self.transaction() as conn:
            return conn.execute(
                update(Run)
                .where(
                    Run.status == PENDING,
                    Run.dispatch_state == QUEUED,
                    Run.dispatched_at <= lost_at,
                    Run.next_publish_at > db_now(),
                )
                .values(next_publish_at=Run.dispatched_at)
            ).rowcount

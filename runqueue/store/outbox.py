"""The outbox: queued runs the broker never got (or lost), and runs whose lease expired."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from runqueue.records import RunRecord
from runqueue.store.models import Run
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
            runs = [self._fetch(conn, row.run_id) for row in due]
        return [run for run in runs if run is not None]

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

"""Delayed runs (after_seconds): which are due, and the guarded claim of their publish.

A delayed run is queued unpublished (`dispatched_at` NULL, `next_publish_at` = `due_at`)
from its creation; the due-run loop of every worker (runqueue/worker/due_runs.py) claims
the publish of the runs that fell due with one guarded UPDATE: a run whose `dispatched_at`
another worker already set is not matched again, so the fleet publishes each run once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from runqueue.records import RunRecord
from runqueue.store.models import Run
from runqueue.store.rows import RUN_COLUMNS, aware, run_record
from runqueue.store.transactions import PENDING, QUEUED, StoreBase, db_now, db_now_plus

# The rows of index runs_delayed (models.DELAYED_UNPUBLISHED): delayed, not yet published.
_DELAYED_UNPUBLISHED = (
    Run.status == PENDING,
    Run.dispatch_state == QUEUED,
    Run.dispatched_at.is_(None),
    Run.due_at.is_not(None),
)


class DueRunStatements(StoreBase):
    """What the due-run loop reads and claims."""

    def claim_due_publishes(self, limit: int = 500) -> list[RunRecord]:
        """Claim the publish of delayed runs that fell due (by the database's clock), oldest
        due first: each is marked published (`dispatched_at` now, the relay's republish
        timer started, as at a create's first publish) and returned for the caller to
        publish. The UPDATE is guarded by `dispatched_at IS NULL`: two workers racing on a
        run, one wins it, the other's
        statement does not match it again (PostgreSQL re-checks the guard on the committed
        row; SKIP LOCKED lets it take other runs meanwhile; SQLite's write lock serializes)."""
        due = (
            select(Run.run_id)
            .where(*_DELAYED_UNPUBLISHED, Run.next_publish_at <= db_now())
            .order_by(Run.next_publish_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.transaction() as conn:
            rows = conn.execute(
                update(Run)
                .where(Run.run_id.in_(due.scalar_subquery()), *_DELAYED_UNPUBLISHED)
                .values(
                    dispatched_at=db_now(),
                    updated_at=db_now(),
                    # The first publish, as create's: the relay's backoff starts from here.
                    next_publish_at=db_now_plus(self._republish_in(0)),
                )
                .returning(*RUN_COLUMNS)
            ).all()
        runs = [run_record(row) for row in rows]
        runs.sort(key=lambda run: (run.due_at or run.created_at, run.run_id))
        return runs

    def next_due_in(self) -> float | None:
        """Seconds until the earliest unpublished delayed run falls due (0 if one is due
        now), by the database's clock; None if there is none."""
        with self.transaction() as conn:
            row = conn.execute(
                select(func.min(Run.next_publish_at).label("due"), db_now().label("now")).where(
                    *_DELAYED_UNPUBLISHED
                )
            ).one()
        due, now = _aware(row.due), _aware(row.now)
        if due is None or now is None:
            return None
        return max((due - now).total_seconds(), 0.0)


def _aware(value: datetime | str | None) -> datetime | None:
    """A timestamp of a computed column (SQLite hands back text for min() and db_now())."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return aware(value)

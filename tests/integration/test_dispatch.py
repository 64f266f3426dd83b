"""A run whose publish failed is recorded, not lost, and the fleet publishes it later."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from runqueue import RunStatus
from runqueue.store.models import Run


def test_run_created_while_the_broker_is_unreachable_runs_later(backend, manager, worker):
    unreachable = backend.manager(broker_url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    run = unreachable.create_or_reject(
        f"thread-{uuid.uuid4().hex[:8]}", "echo", kwargs={"late": True}
    )
    create_seconds = time.monotonic() - started

    assert run.status is RunStatus.pending
    with manager.store.transaction() as conn:
        dispatched_at = conn.execute(
            select(Run.dispatched_at).where(Run.run_id == run.run_id)
        ).scalar()
    assert dispatched_at is None, "a failed publish must be recorded as not dispatched"
    assert create_seconds < 10, f"create blocked {create_seconds:.1f}s on a dead broker"

    # The worker's relay finds it and publishes it on the real broker.
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.success
    assert done.result == {"echo": {"late": True}, "turn": 1}


def test_relay_backs_off_on_a_run_that_stays_unclaimed(backend):
    """An unclaimed run is published again after republish_after, then after twice that, ...:
    a long backlog is not flooded with copies.

    The module's worker runs a relay on the same database, so either relay may send a copy:
    each copy is read off the run's row (publish_count, dispatched_at by the database's
    clock), whoever sent it, not off this test's own calls."""
    manager = backend.manager(queue=f"nobody-{uuid.uuid4().hex[:8]}", republish_after=0.5)
    run = manager.create_or_reject(f"thread-{uuid.uuid4().hex[:8]}", "echo")
    store = manager.store

    def copies() -> tuple[int, object]:
        with store.transaction() as conn:
            row = conn.execute(
                select(Run.publish_count, Run.dispatched_at).where(Run.run_id == run.run_id)
            ).one()
        return row.publish_count, row.dispatched_at

    sent_at = {}  # publish_count -> dispatched_at of that copy
    deadline = time.monotonic() + 10.0
    while len(sent_at) < 3 and time.monotonic() < deadline:
        store.runs_to_publish()
        count, dispatched_at = copies()
        if count >= 1:
            sent_at.setdefault(count, dispatched_at)
        time.sleep(0.05)

    # Due at about 0.5 s, then 0.5 + 1 = 1.5 s, then 1.5 + 2 = 3.5 s.
    assert sorted(sent_at) == [1, 2, 3], sent_at
    gaps = [(sent_at[n + 1] - sent_at[n]).total_seconds() for n in (1, 2)]
    assert 0.9 <= gaps[0] <= 1.6 and 1.9 <= gaps[1] <= 2.8, gaps
    # The fourth copy is 4 s after the third, not sooner.
    time.sleep(1.0)
    store.runs_to_publish()
    assert copies()[0] == 3

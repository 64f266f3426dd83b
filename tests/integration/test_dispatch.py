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
    a long backlog is not flooded with copies."""
    manager = backend.manager(queue=f"nobody-{uuid.uuid4().hex[:8]}", republish_after=0.5)
    run = manager.create_or_reject(f"thread-{uuid.uuid4().hex[:8]}", "echo")
    store = manager.store

    republished_at = []
    started = time.monotonic()
    while time.monotonic() - started < 4.0:
        if any(r.run_id == run.run_id for r in store.runs_to_publish()):
            republished_at.append(round(time.monotonic() - started, 1))
        time.sleep(0.05)

    # Due at about 0.5 s, then 0.5 + 1 = 1.5 s, then 1.5 + 2 = 3.5 s.
    assert len(republished_at) == 3, republished_at
    gaps = [b - a for a, b in zip(republished_at, republished_at[1:], strict=False)]
    assert 0.8 <= gaps[0] <= 1.4 and 1.7 <= gaps[1] <= 2.5, republished_at
    with store.transaction() as conn:
        count = conn.execute(select(Run.publish_count).where(Run.run_id == run.run_id)).scalar()
    assert count == 3

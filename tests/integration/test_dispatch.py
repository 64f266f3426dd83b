"""A run whose publish failed is recorded, not lost, and the fleet publishes it later."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from runqueue import RunStatus
from runqueue.models import Run


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

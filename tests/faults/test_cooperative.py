"""Threads and solo pools cannot terminate a task (revoke terminate is ignored there): a
cancel still ends the running run through the cooperative check, within one step plus the
0.25 s database poll (CANCEL_POLL_SECONDS); the test allows 2 s."""

from __future__ import annotations

import time
import uuid

import pytest

from runqueue import RunStatus
from runqueue.worker.execution import CANCEL_POLL_SECONDS
from tests.faults import faultkit
from tests.support import read_journal

STEP_SECONDS = 0.2
BOUND_SECONDS = 2.0


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_cancel_running_run_in_pool_without_terminate(
    pool, shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = tmp_path / "journal.jsonl"
    workers(settings, concurrency=2, pool=pool)
    thread_id = f"coop-{uuid.uuid4().hex[:10]}"
    kwargs = {"delay": STEP_SECONDS, "journal": str(journal), "cooperative": True}
    run = manager.create_or_reject(thread_id, "steps", kwargs={"steps": 100, **kwargs})
    following = manager.create_or_reject(
        thread_id, "steps", kwargs={"steps": 1, **kwargs}, multitask_strategy="enqueue"
    )
    faultkit.wait_for(
        lambda: sum(line["event"] == "step" for line in read_journal(journal)) >= 2,
        30,
        "the run's steps",
    )

    cancelled_at = time.time()
    assert manager.cancel(run.run_id) is True
    ended = manager.join(run.run_id, timeout=10)
    next_run = manager.join(following.run_id, timeout=30)
    lines = read_journal(journal)
    last_step = max(
        line["time"] for line in lines if line["run_id"] == run.run_id and line["event"] == "step"
    )
    stopped_after = ended.ended_at.timestamp() - cancelled_at
    report(
        f"cooperative-cancel-{pool}",
        runs=2,
        lost=int(next_run.status is not RunStatus.success),
        duplicated=faultkit.duplicated(lines),
        overlapping=faultkit.overlapping(lines),
        free_after_s=stopped_after,
        bound_s=STEP_SECONDS + CANCEL_POLL_SECONDS,
    )
    assert ended.status is RunStatus.interrupted
    assert stopped_after <= BOUND_SECONDS
    assert last_step <= cancelled_at + BOUND_SECONDS  # its side effects stopped
    assert next_run.status is RunStatus.success
    assert faultkit.overlapping(lines) == 0 and faultkit.duplicated(lines) == 0

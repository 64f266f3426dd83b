"""Threads and solo pools cannot terminate a task (revoke terminate is ignored there): a
cancel still ends the running run through the cooperative check, within one step plus the
0.25 s database poll (CANCEL_POLL_SECONDS); the test allows 2 s."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from runqueue.records import AbortAction
from runqueue.worker.run_context import CANCEL_POLL_SECONDS
from tests.faults import faultkit
from tests.support import RunFactory

STEP_SECONDS = 0.2
BOUND_SECONDS = 2.0
FINALLY_SECONDS = 1.0
FINALLY_TRIALS = 50
FINALLY_PARALLEL = 5


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_cancel_running_run_in_pool_without_terminate(
    pool, shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run_factory = RunFactory(manager, journal)
    workers(settings, concurrency=2, pool=pool)
    thread_id = f"coop-{uuid.uuid4().hex[:10]}"
    run = run_factory(thread_id, steps=100, delay=STEP_SECONDS, cooperative=True)
    following = run_factory(
        thread_id, steps=1, delay=STEP_SECONDS, strategy="enqueue", cooperative=True
    )
    faultkit.wait_for(lambda: journal.count(event="step") >= 2, 30, "the run's steps")

    cancelled_at = time.time()
    assert manager.cancel(run.run_id) is True
    ended = manager.join(run.run_id, timeout=10)
    next_run = manager.join(following.run_id, timeout=30)
    last_step = max(line["time"] for line in journal.lines(run_id=run.run_id, event="step"))
    stopped_after = ended.ended_at.timestamp() - cancelled_at
    report(
        f"cooperative-cancel-{pool}",
        runs=2,
        lost=int(next_run.status is not RunStatus.success),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        free_after_s=stopped_after,
        bound_s=STEP_SECONDS + CANCEL_POLL_SECONDS,
    )
    assert ended.status is RunStatus.interrupted
    assert stopped_after <= BOUND_SECONDS
    assert last_step <= cancelled_at + BOUND_SECONDS  # its side effects stopped
    assert next_run.status is RunStatus.success
    assert journal.overlapping() == 0 and journal.duplicated() == 0


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_cancel_a_graph_run_between_supersteps(pool, shared_backend, workers, report, tmp_path):
    """No SIGTERM reaches a graph's node here: the cancel stops the graph between supersteps,
    and the run ends only once its node has returned, so the thread's next run (which
    continues from the last kept checkpoint) never overlaps it."""
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    workers(settings, concurrency=2, pool=pool)
    thread_id = f"coop-graph-{uuid.uuid4().hex[:10]}"
    run = manager.create(
        thread_id,
        "research",
        kwargs={"input": {"topic": "coop", "pause": 1.0, "journal": str(journal)}},
    )
    faultkit.wait_for(lambda: journal.count(run_id=run.run_id, event="tick") >= 3, 30, "research")
    cancelled_at = time.time()
    assert manager.cancel(run.run_id) is True
    ended = manager.join(run.run_id, timeout=10)
    last_tick = max(line["time"] for line in journal.lines(run_id=run.run_id, event="tick"))
    state = manager.state(thread_id)
    report(
        f"cooperative-graph-cancel-{pool}",
        runs=1,
        free_after_s=ended.ended_at.timestamp() - cancelled_at,
        node_done_before_end=last_tick <= ended.ended_at.timestamp(),
    )
    assert ended.status is RunStatus.interrupted
    assert last_tick <= ended.ended_at.timestamp()  # the node had returned: no overlap
    assert ended.ended_at.timestamp() - cancelled_at <= BOUND_SECONDS
    # The node's result came after the cancel: refused. The graph stopped before `review`.
    assert state.values["log"] == [f"plan@{run.run_id}"] and state.next == ("research",)

    follow_up = manager.create(thread_id, "research", kwargs={})
    assert manager.join(follow_up.run_id, timeout=30).status is RunStatus.success
    assert manager.state(thread_id).values["log"][1:] == [
        f"{node}@{follow_up.run_id}" for node in ("research", "review", "respond")
    ]


def test_a_finally_block_after_a_refused_checkpoint_runs_to_its_end(
    shared_backend, workers, report, tmp_path
):
    """A cancel whose revoke broadcast was lost: the run's next checkpoint is refused and it
    unwinds into its 1 s finally block. A SIGTERM then arrives there: the revoke's (sent
    here at a random moment of the block), and the heartbeat's, which reads the cancel within
    a second. Neither may raise inside the block: it runs to its end, then the child exits.
    50 trials, 5 at a time."""
    settings = shared_backend.settings
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=FINALLY_PARALLEL)
    moments = random.Random(13)
    delays = [moments.uniform(0.0, 0.8) for _ in range(FINALLY_TRIALS)]

    def trial(delay: float) -> tuple[RunStatus, int, int, float, bool]:
        manager = faultkit.manager_for(settings)
        run = manager.create(
            f"finally-{uuid.uuid4().hex[:10]}",
            "slow_finally",
            kwargs={"finally_seconds": FINALLY_SECONDS, "journal": str(journal.path)},
        )
        faultkit.wait_for(lambda: journal.first(run.run_id), 30, "the start")
        pid = journal.pid(run.run_id)
        # The cancel is recorded, and its revoke broadcast lost (its effects are not applied).
        assert manager.store.cancel_run(run.run_id, AbortAction.interrupt)[0] is True
        began = faultkit.wait_for(lambda: journal.first(run.run_id, "finally"), 30, "finally")
        time.sleep(max(0.0, began["time"] + delay - time.time()))
        signalled_at = time.time()
        with contextlib.suppress(ProcessLookupError):  # gone already: the checks below fail
            os.kill(pid, signal.SIGTERM)  # what Celery's revoke(terminate=True) sends
        ended = manager.join(run.run_id, timeout=30)
        faultkit.wait_for(lambda: pid not in worker.pool_pids(), 30, "the child to exit")
        finished = journal.lines(run_id=run.run_id, event="end")
        spent = finished[0]["time"] - began["time"] if finished else 0.0
        inside = bool(finished) and signalled_at < finished[0]["time"]
        began_count = journal.count(run_id=run.run_id, event="finally")
        return ended.status, began_count, len(finished), spent, inside

    with ThreadPoolExecutor(FINALLY_PARALLEL) as trials:
        outcomes = list(trials.map(trial, delays))
    completed = sum(
        status is RunStatus.interrupted and began == 1 and finished == 1 and spent >= 1.0
        for status, began, finished, spent, _ in outcomes
    )
    inside = sum(outcome[-1] for outcome in outcomes)
    report(
        "finally-after-refused-checkpoint",
        trials=len(outcomes),
        finally_s=FINALLY_SECONDS,
        finally_completed=completed,
        sigterm_inside_finally=inside,
    )
    assert completed == FINALLY_TRIALS, outcomes
    assert inside >= FINALLY_TRIALS // 2, outcomes  # most SIGTERMs landed in the block

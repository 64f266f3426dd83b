"""A graph run's process that lost its lease writes no LangGraph checkpoint after the reaper
ended its run: its checkpointer is fenced on the run's claim (runqueue.langgraph)."""

from __future__ import annotations

import os
import signal
import time
import uuid

from runqueue import RunStatus
from runqueue.journal import Journal
from runqueue.langgraph import RunCheckpointer
from tests.faults import faultkit
from tests.support import pid_alive

TICK = 0.05  # workers/graphs.py TICK_SECONDS


def written(manager, thread_id: str) -> tuple[list[str], int]:  # noqa: ANN001
    """The thread's LangGraph checkpoint ids and pending writes, read with the official
    saver."""
    found = list(RunCheckpointer(manager.store).list({"configurable": {"thread_id": thread_id}}))
    ids = sorted(item.config["configurable"]["checkpoint_id"] for item in found)
    return ids, sum(len(item.pending_writes or ()) for item in found)


def test_a_paused_graph_run_writes_no_checkpoint_after_it_was_reaped(
    each_backend, workers, report, tmp_path
):
    """SIGSTOP the pool child while its `research` node is about to finish, past the lease;
    the reaper ends the run; SIGCONT: the node returns and LangGraph writes its step, which
    the fence refuses."""
    settings = each_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=1)
    thread_id = f"graph-fault-{uuid.uuid4().hex[:10]}"
    pause = 2.0
    run = manager.create(
        thread_id,
        "research",
        kwargs={"input": {"topic": "fence", "pause": pause, "journal": str(journal)}},
    )
    last_tick = round(pause / TICK)
    faultkit.wait_for(
        lambda: journal.count(run_id=run.run_id, event="tick") >= last_tick - 2, 30, "research"
    )
    pid = journal.lines(run_id=run.run_id, event="tick")[0]["pid"]
    assert pid in worker.pool_pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        ended = manager.join(run.run_id, timeout=settings.lease_seconds + 10)
        at_the_end = written(manager, thread_id)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ended.status is RunStatus.error and "lease expired" in ended.error

    # The node finishes after SIGCONT (its last ticks), and what the process then writes is
    # refused; by 3 s on, the process has exited or stopped trying.
    faultkit.wait_for(
        lambda: journal.count(run_id=run.run_id, event="tick") >= last_tick or not pid_alive(pid),
        30,
        "the node to finish, or its process to exit",
    )
    time.sleep(3.0)
    after = written(manager, thread_id)
    refused = worker.log().count("graph checkpoint refused")
    report(
        "graph-fence-sigstop",
        checkpoints_at_end=len(at_the_end[0]),
        checkpoints_after=len(after[0]),
        refused_writes=refused,
    )
    # Nothing written after the end. (Whether the paused process got to try before its
    # heartbeat stopped it is a race, reported as refused_writes; the fence itself is shown
    # deterministically in tests/integration/test_graph_checkpointer.py.)
    assert after == at_the_end
    assert manager.state(thread_id).values["log"] == [f"plan@{run.run_id}"]

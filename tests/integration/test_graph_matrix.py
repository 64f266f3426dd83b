"""Sync, async and mixed graphs keep the same guarantees on every worker pool and backend.

A matrix over {sync, async, mixed} graphs (tests/matrix_graphs.py) x {prefork, threads}
pools x {embedded, postgres_redis}: the run streams its modes, stops at interrupt() and
resumes, is rolled back to exactly the state before it, and, cancelled mid-node, stops
executing within a second and never overlaps the thread's next run. What ran, and when, is
judged from the `work` node's own journal: one line per 10 ms tick, with its monotonic time.
(SIGKILL of the worker: tests/faults/test_graph_kill.py.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from runqueue.langgraph import RunCheckpointer
from runqueue.langgraph.events import STREAM_MODES
from tests.conftest import BACKENDS, require_services
from tests.matrix_graphs import KINDS, POOLS, QUESTION, assistant_name
from tests.support import Backend, StreamReader, WorkerProcess, make_backend, wait_until

MATRIX_IMPORTS = "tests.matrix_graphs:register"
LONG_TICKS = 400  # 4 s of work: long enough that a node nobody stopped shows in its journal
CANCEL_BOUND_SECONDS = 1.0  # no tick later than this after cancel() returned
# The stream modes judged here; debug, tasks and checkpoints once the API serves them.
MODES = ["values", "updates", "custom"] + [
    mode for mode in ("debug", "tasks", "checkpoints") if mode in STREAM_MODES
]

pytestmark = pytest.mark.parametrize(
    ("kind", "pool"), [(kind, pool) for pool in POOLS for kind in KINDS]
)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The module's backend (tests/conftest.py's), serving the matrix's graphs too."""
    if request.param != "embedded":
        require_services()
    backend = make_backend(
        request.param, tmp_path_factory.mktemp(request.param), imports=MATRIX_IMPORTS
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def pools(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, WorkerProcess]]:
    """One worker per pool, each serving only its pool's assistants (started in parallel)."""
    logs = Path(tmp_path_factory.mktemp("matrix-workers"))
    workers = {
        pool: WorkerProcess(
            backend.settings.with_overrides(imports=f"tests.matrix_graphs:register_{pool}"),
            logs / f"{pool}.log",
            concurrency=2,
            pool=pool,
            name=f"matrix-{pool}",
        )
        for pool in POOLS
    }
    try:
        with ThreadPoolExecutor(len(workers)) as starting:
            list(starting.map(lambda worker: worker.start(), workers.values()))
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


@pytest.fixture
def graph(kind: str, pool: str, pools: dict[str, WorkerProcess]) -> str:
    """The assistant of this cell: the graph kind, executed only by this pool's worker."""
    return assistant_name(kind, pool)


def new_thread() -> str:
    return f"matrix-{uuid.uuid4().hex[:12]}"


def ticks(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    """The `work` node's journal lines for this run, oldest first."""
    return journal.lines(run_id=run_id, event="tick")


def checkpoint_ids(manager, thread_id: str) -> list[str]:  # noqa: ANN001
    """The thread's LangGraph checkpoints, read with the official saver."""
    found = RunCheckpointer(manager.store).list({"configurable": {"thread_id": thread_id}})
    return sorted(item.config["configurable"]["checkpoint_id"] for item in found)


def test_streams_values_updates_and_custom_events(manager, graph, journal):
    run_input = {"label": "stream", "ticks": 20, "journal": str(journal)}
    run = manager.create(new_thread(), graph, kwargs={"input": run_input, "stream_mode": MODES})
    events = StreamReader(manager, run.run_id).begin().result(timeout=60)
    final = manager.get(run.run_id)
    assert final.status is RunStatus.success, final.error

    names = [event.event for event in events]
    assert names[0] == "metadata" and names[-1] == "end"
    assert set(names) == {"metadata", "end", *MODES}
    assert [next(iter(e.data)) for e in events if e.event == "updates"] == ["work", "gate"]
    # One custom event per tick, in order, and one journal line per tick: the node ran once.
    assert [e.data for e in events if e.event == "custom"] == [
        {"node": "work", "tick": tick} for tick in range(1, 21)
    ]
    assert [line["tick"] for line in ticks(journal, run.run_id)] == list(range(1, 21))
    values = [e.data for e in events if e.event == "values"]
    assert values[0] == {**run_input, "log": []}
    log = [f"work@{run.run_id}", f"gate@{run.run_id}"]
    assert values[-1] == {**run_input, "log": log}
    assert final.result == values[-1] == manager.state(run.thread_id).values
    if "tasks" in MODES:  # each node's start, then its result
        tasks = [(e.data["name"], "result" in e.data) for e in events if e.event == "tasks"]
        assert tasks == [("work", False), ("work", True), ("gate", False), ("gate", True)]
    if "checkpoints" in MODES:  # the last checkpoint written is the thread's final state
        checkpoints = [e.data for e in events if e.event == "checkpoints"]
        assert checkpoints[-1]["values"] == values[-1] and checkpoints[-1]["next"] == []


def test_interrupt_then_resume_with_a_command(manager, graph, journal):
    thread_id = new_thread()
    asking = manager.create(
        thread_id,
        graph,
        kwargs={"input": {"label": "ask", "ticks": 3, "ask": True, "journal": str(journal)}},
    )
    ended = manager.join(asking.run_id, timeout=60)
    assert ended.status is RunStatus.success, ended.error  # stopping at interrupt() succeeds
    assert [i["value"] for i in ended.result["__interrupt__"]] == [{"question": QUESTION}]
    waiting = manager.state(thread_id)
    assert waiting.next == ("gate",)
    assert [i["value"] for i in waiting.interrupts] == [{"question": QUESTION}]
    assert waiting.values["log"] == [f"work@{asking.run_id}"] and "answer" not in waiting.values

    resumed = manager.create(thread_id, graph, kwargs={"command": {"resume": "yes"}})
    ended = manager.join(resumed.run_id, timeout=60)
    assert ended.status is RunStatus.success, ended.error
    done = manager.state(thread_id)
    assert done.values["answer"] == ended.result["answer"] == "yes"
    assert done.values["log"] == [f"work@{asking.run_id}", f"gate@{resumed.run_id}"]
    assert done.next == () and done.interrupts == ()
    # `work` ran once, in the first run: the resume went on from the interrupt.
    assert len(ticks(journal, asking.run_id)) == 3 and ticks(journal, resumed.run_id) == []


def test_rollback_restores_the_state_before_the_run_input_included(manager, graph, journal):
    thread_id = new_thread()
    first = manager.create(thread_id, graph, kwargs={"input": {"label": "first", "ticks": 2}})
    assert manager.join(first.run_id, timeout=60).status is RunStatus.success
    before = manager.state(thread_id)
    checkpoints_before = checkpoint_ids(manager, thread_id)

    replaced = manager.create_or_reject(
        thread_id,
        graph,
        kwargs={"input": {"label": "replaced", "ticks": LONG_TICKS, "journal": str(journal)}},
        multitask_strategy="enqueue",
    )
    # Mid-node, with its input already in the thread's state: the rollback must remove it.
    wait_until(lambda: len(ticks(journal, replaced.run_id)) >= 5, 30, message="work's ticks")
    assert manager.state(thread_id).values["label"] == "replaced"

    # No input: the rollback run goes on from whatever the thread's state is. If anything of
    # the replaced run were left (its input's checkpoint), it would run `work` again.
    rolling = manager.create_or_reject(thread_id, graph, kwargs={}, multitask_strategy="rollback")
    ended = manager.join(rolling.run_id, timeout=60)
    assert ended.status is RunStatus.success, ended.error
    assert manager.get(replaced.run_id).status is RunStatus.interrupted

    after = manager.state(thread_id)
    assert after.values == before.values
    assert after.values["label"] == "first"
    assert (after.next, after.interrupts, after.checkpoint_id, after.metadata) == (
        before.next, before.interrupts, before.checkpoint_id, before.metadata,
    )  # fmt: skip
    assert checkpoint_ids(manager, thread_id) == checkpoints_before
    # The replaced run's node had stopped when the rollback run ended.
    assert (
        max(line["time"] for line in ticks(journal, replaced.run_id)) < ended.ended_at.timestamp()
    )


def test_cancel_mid_node_stops_the_node_before_the_next_run(manager, graph, journal, kind, pool):
    thread_id = new_thread()
    cancelled = manager.create(
        thread_id,
        graph,
        kwargs={"input": {"label": "cancelled", "ticks": LONG_TICKS, "journal": str(journal)}},
    )
    following = manager.create_or_reject(
        thread_id,
        graph,
        kwargs={"input": {"label": "next", "ticks": 5, "journal": str(journal)}},
        multitask_strategy="enqueue",
    )
    wait_until(lambda: len(ticks(journal, cancelled.run_id)) >= 10, 30, message="work's ticks")

    assert manager.cancel(cancelled.run_id) is True
    returned = time.monotonic()
    ended = manager.join(cancelled.run_id, timeout=30)
    joined = time.monotonic()
    assert ended.status is RunStatus.interrupted
    next_run = manager.join(following.run_id, timeout=60)
    assert next_run.status is RunStatus.success, next_run.error
    # Watch the journal past the bound: a node still running would write more ticks.
    time.sleep(max(0.0, returned + CANCEL_BOUND_SECONDS + 0.5 - time.monotonic()))

    stopped = ticks(journal, cancelled.run_id)
    last = max(line["monotonic"] for line in stopped)
    next_ticks = ticks(journal, following.run_id)
    assert [line["tick"] for line in next_ticks] == [1, 2, 3, 4, 5]
    assert min(line["monotonic"] for line in next_ticks) > last  # no overlap
    state = manager.state(thread_id)
    assert state.values["label"] == "next"
    assert state.values["log"] == [f"work@{following.run_id}", f"gate@{following.run_id}"]
    late = last - returned
    if kind == "sync" and pool == "threads":
        # No safe way stops a Python thread from outside (runqueue/langgraph/graph_loop.py):
        # the sync node finishes its call, and the run ends only after it.
        assert last <= joined, f"the node ticked {last - joined:.2f}s after its run ended"
        return
    # Stopped mid-node: a node nobody stopped would tick on for seconds (checked last, so
    # that a failure here says the other guarantees held).
    assert late <= CANCEL_BOUND_SECONDS, (
        f"the node ticked {late:.2f}s after cancel returned ({len(stopped)} of {LONG_TICKS} ticks)"
    )

"""LangGraph graphs as assistants, on both backends with a real prefork worker: the example
graph (workers/graphs.py) streams, stops at interrupt() and resumes, and the interrupt and
rollback strategies reach its checkpoints. Each node logs `node@run_id` into the thread's
state, and `research` journals its ticks: what ran is judged from those."""

from __future__ import annotations

import time
import uuid

import pytest

from runqueue import InvalidPayloadError, RunStatus
from runqueue.langgraph import RunCheckpointer
from tests.support import StreamReader, wait_until

REPLY = "Here is a short note on {topic}: durable, fenced and streamed."


def new_thread() -> str:
    return f"graph-{uuid.uuid4().hex[:12]}"


def graph_checkpoints(manager, thread_id: str) -> list[str]:  # noqa: ANN001
    """The ids of the thread's LangGraph checkpoints, read with the official saver."""
    checkpointer = RunCheckpointer(manager.store)
    found = checkpointer.list({"configurable": {"thread_id": thread_id}})
    return sorted(item.config["configurable"]["checkpoint_id"] for item in found)


def logged_by(state, run_id: str) -> list[str]:  # noqa: ANN001
    """The nodes that the run's attempts completed, as the thread's state records them."""
    return [entry.split("@")[0] for entry in state.values["log"] if entry.endswith(run_id)]


def run_through(manager, thread_id: str, **run_input) -> str:  # noqa: ANN001, ANN003
    run = manager.create(thread_id, "research", kwargs={"input": run_input})
    assert manager.join(run.run_id, timeout=60).status is RunStatus.success
    return run.run_id


def start_long_run(manager, thread_id, journal, strategy="enqueue"):  # noqa: ANN001, ANN201
    """A run whose `research` node works 4 s; returns once that node has ticked 5 times (the
    `plan` checkpoint is written by then)."""
    run = manager.create_or_reject(
        thread_id,
        "research",
        kwargs={"input": {"topic": "cancel", "pause": 4.0, "journal": str(journal)}},
        multitask_strategy=strategy,
    )
    wait_until(lambda: journal.count(run_id=run.run_id, event="tick") >= 5, 30, message="research")
    return run


def test_a_graph_streams_values_updates_and_its_tokens_live(manager, worker):
    run = manager.create(
        new_thread(),
        "research",
        kwargs={
            "input": {"topic": "streams", "token_delay": 0.05},
            "stream_mode": ["values", "updates", "messages"],
        },
    )
    reader = StreamReader(manager, run.run_id).begin()
    events = reader.result(timeout=60)
    final = manager.get(run.run_id)
    assert final.status is RunStatus.success

    names = [event.event for event in events]
    assert names[0] == "metadata" and names[-1] == "end"
    assert {"values", "updates", "messages"} <= set(names) <= {
        "metadata", "values", "updates", "messages", "end",
    }  # fmt: skip
    # `updates`: one per node, in the graph's order.
    assert [next(iter(e.data)) for e in events if e.event == "updates"] == [
        "plan", "research", "review", "respond",
    ]  # fmt: skip
    # `messages`: [chunk, metadata]; the reply's chunks, token by token, make the reply.
    tokens = [
        (at, e.data) for at, e in reader.received
        if e.event == "messages" and e.data[0]["type"] == "AIMessageChunk"
    ]  # fmt: skip
    assert len(tokens) > 10
    assert "".join(data[0]["content"] for _, data in tokens) == REPLY.format(topic="streams")
    assert all(data[1]["langgraph_node"] == "respond" for _, data in tokens)
    # The tokens arrived while the run was running, not after it ended.
    first_token_at = tokens[0][0]
    assert first_token_at < final.ended_at.timestamp() - 0.3
    assert reader.end_at() - first_token_at > 0.3
    # The last `values` event is the run's result and the thread's state.
    last_values = [e.data for e in events if e.event == "values"][-1]
    assert final.result == last_values == manager.state(run.thread_id).values


def test_rollback_puts_the_graph_state_back_value_by_value(manager, worker, journal):
    thread_id = new_thread()
    run_through(manager, thread_id, topic="first")
    before = manager.state(thread_id)
    checkpoints_before = graph_checkpoints(manager, thread_id)

    run = start_long_run(manager, thread_id, journal)
    assert logged_by(manager.state(thread_id), run.run_id) == ["plan"]  # it wrote state
    assert manager.cancel(run.run_id, action="rollback")
    assert manager.join(run.run_id, timeout=30).status is RunStatus.interrupted

    after = manager.state(thread_id)
    assert after.values == before.values
    assert after.values["topic"] == "first"
    assert (after.next, after.interrupts, after.checkpoint_id, after.metadata) == (
        before.next, before.interrupts, before.checkpoint_id, before.metadata,
    )  # fmt: skip
    assert graph_checkpoints(manager, thread_id) == checkpoints_before


def test_the_rollback_strategy_leaves_no_trace_of_the_replaced_run(manager, worker, journal):
    thread_id = new_thread()
    first = run_through(manager, thread_id, topic="first")
    replaced = start_long_run(manager, thread_id, journal)
    replacement = manager.create_or_reject(
        thread_id, "research", kwargs={"input": {"topic": "third"}}, multitask_strategy="rollback"
    )
    assert manager.join(replacement.run_id, timeout=60).status is RunStatus.success
    assert manager.get(replaced.run_id).status is RunStatus.interrupted

    state = manager.state(thread_id)
    assert logged_by(state, replaced.run_id) == []
    assert logged_by(state, first) == logged_by(state, replacement.run_id)
    assert logged_by(state, first) == ["plan", "research", "review", "respond"]
    humans = [m["content"] for m in state.values["messages"] if m["type"] == "human"]
    assert humans == ["Tell me about first", "Tell me about third"]


def test_interrupt_keeps_partial_state_and_the_next_run_continues_from_it(manager, worker, journal):
    thread_id = new_thread()
    interrupted = start_long_run(manager, thread_id, journal)
    cancelled_at = time.time()
    assert manager.cancel(interrupted.run_id)
    assert manager.join(interrupted.run_id, timeout=30).status is RunStatus.interrupted

    # Stopped mid-node, within a second: the node's ticks stop.
    time.sleep(0.5)
    ticks = journal.lines(run_id=interrupted.run_id, event="tick")
    assert ticks[-1]["time"] - cancelled_at <= 1.0
    assert len(ticks) < 4.0 / 0.05  # it did not work to the end

    # Kept: `plan`'s checkpoint; `research` is what runs next.
    kept = manager.state(thread_id)
    assert logged_by(kept, interrupted.run_id) == ["plan"]
    assert kept.next == ("research",)

    # The next run, with no input, continues from there: research, review, respond.
    follow_up = manager.create(thread_id, "research", kwargs={})
    assert manager.join(follow_up.run_id, timeout=60).status is RunStatus.success
    state = manager.state(thread_id)
    assert logged_by(state, interrupted.run_id) == ["plan"]
    assert logged_by(state, follow_up.run_id) == ["research", "review", "respond"]
    assert state.next == ()
    assert state.values["messages"][-1]["content"] == REPLY.format(topic="cancel")


def test_interrupt_then_resume_with_a_command(manager, worker):
    thread_id = new_thread()
    asking = manager.create(thread_id, "research", kwargs={"input": {"topic": "hitl", "ask": True}})
    ended = manager.join(asking.run_id, timeout=60)
    assert ended.status is RunStatus.success  # stopping at interrupt() is a run's success
    question = {"question": "Publish the note on hitl?"}
    assert [i["value"] for i in ended.result["__interrupt__"]] == [question]

    waiting = manager.state(thread_id)
    assert waiting.next == ("review",)
    assert [i["value"] for i in waiting.interrupts] == [question]
    assert "approval" not in waiting.values

    # The answer, and an update given as [key, value] pairs (JSON has no tuples).
    command = {"resume": "yes", "update": [["topic", "approved hitl"]]}
    resumed = manager.create(thread_id, "research", kwargs={"command": command})
    assert manager.join(resumed.run_id, timeout=60).status is RunStatus.success
    done = manager.state(thread_id)
    assert done.values["approval"] == "yes"
    assert done.values["topic"] == "approved hitl"
    assert done.values["messages"][-1]["content"] == REPLY.format(topic="approved hitl")
    assert done.next == () and done.interrupts == ()
    assert logged_by(done, resumed.run_id) == ["review", "respond"]
    assert manager.get(resumed.run_id).result["approval"] == "yes"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": {}}, "takes input, config, stream_mode, command"),
        ({"stream_mode": "bogus"}, "unknown stream_mode 'bogus'"),
        ({"stream_mode": []}, "stream_mode must be"),
        ({"command": {"resume": 1}, "input": {"topic": "x"}}, "not both"),
        ({"command": {"jump": 1}}, "command must be an object"),
        ({"config": {"configurable": {"thread_id": "other"}}}, "thread_id is 'other'"),
        ({"config": {"configurable": "x"}}, "config.configurable must be a JSON object"),
        ({"config": {"metadata": ["x"]}}, "config.metadata must be a JSON object"),
        ({"config": {"configurable": {"checkpoint_ns": "a"}}}, "checkpoint_ns is set by"),
        ({"config": {"configurable": {"__pregel_x": 1}}}, "__pregel_x is set by"),
        ({"config": []}, "config must be a JSON object"),
        ({"command": {}}, "command needs one of"),
        ({"command": {"resume": None}}, "command needs one of"),
        ({"command": {"goto": 5}}, "command.goto must be"),
        ({"command": {"update": "x"}}, "command.update must be"),
        ({"command": {"update": [["topic"]]}}, "command.update must be"),
    ],
)
def test_bad_graph_kwargs_are_refused_before_anything_is_written(manager, kwargs, message):
    thread_id = new_thread()
    with pytest.raises(InvalidPayloadError, match=message):
        manager.create_or_reject(thread_id, "research", kwargs=kwargs)
    assert manager.list_by_thread(thread_id) == []


def test_what_a_finished_run_wrote_is_forgotten_by_the_maintenance_pass(manager, worker):
    """The ledger of graph writes serves rollback only, so only runs in flight keep it."""
    from sqlalchemy import func, select

    from runqueue.store.models import GraphWriteRow

    run_id = run_through(manager, new_thread(), topic="ledger")

    def recorded() -> int:
        with manager.store.reading() as conn:
            return conn.execute(select(func.count()).where(GraphWriteRow.run_id == run_id)).scalar()

    wait_until(lambda: recorded() == 0, 10, message="the ledger purge")


def test_state_of_a_plain_assistant_is_its_latest_checkpoint(manager, worker):
    thread_id = new_thread()
    assert manager.state(thread_id).values is None  # no run yet
    for n in (1, 2):
        run = manager.create(thread_id, "echo", kwargs={"n": n})
        assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    state = manager.state(thread_id)
    assert state.values == {"turns": 2, "last": {"n": 2}}
    assert state.values == manager.checkpoints(thread_id)[-1].values
    assert state.assistant_id == "echo" and state.next == ()

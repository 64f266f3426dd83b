"""runqueue's LangGraph checkpointer in-process, on both databases: every write is fenced on
the run's claim, and the rollback strategy deletes exactly what the rolled-back run wrote
(its checkpoints, and the writes it added under older ones), nothing else."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from sqlalchemy import func, select, text

from runqueue import FencedOffError, RunStatus
from runqueue.langgraph import RunCheckpointer
from runqueue.langgraph.checkpointer import Fence
from runqueue.store.models import GraphWriteRow


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    answer: str


def build_graph():  # noqa: ANN201
    """first -> ask (interrupt() when the input says so) -> last."""

    def first(state: State) -> State:
        return {"log": ["first"]}

    def ask(state: State) -> State:
        return {"answer": interrupt("approve?"), "log": ["ask"]}

    def last(state: State) -> State:
        return {"log": ["last"]}

    graph = StateGraph(State)
    for node in (first, ask, last):
        graph.add_node(node.__name__, node)
    graph.add_edge(START, "first")
    graph.add_edge("first", "ask")
    graph.add_edge("ask", "last")
    graph.add_edge("last", END)
    return graph.compile()


GRAPH = build_graph()


class TwoQuestions(TypedDict, total=False):
    a: int
    answers: list[str]


def build_two_question_graph():  # noqa: ANN201
    """One node that asks twice: each resume re-runs it, LangGraph replaying the answers."""

    def ask_twice(state: TwoQuestions) -> TwoQuestions:
        return {"answers": [interrupt("first?"), interrupt("second?")]}

    graph = StateGraph(TwoQuestions)
    graph.add_node("ask_twice", ask_twice)
    graph.add_edge(START, "ask_twice")
    graph.add_edge("ask_twice", END)
    return graph.compile()


TWO_QUESTIONS = build_two_question_graph()


def claimed_run(manager, thread_id: str) -> tuple[str, RunCheckpointer]:  # noqa: ANN001
    """A run of the thread, claimed here as a worker would: its fenced checkpointer."""
    run = manager.create(thread_id, "echo")  # the assistant does not matter: no worker runs
    token = str(uuid.uuid4())
    assert manager.store.claim_run(run.run_id, "in-process", token, 60.0).claimed
    return run.run_id, RunCheckpointer(manager.store, Fence(run.run_id, token))


def config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def state(manager, thread_id: str):  # noqa: ANN001, ANN201
    reader = GRAPH.copy(update={"checkpointer": RunCheckpointer(manager.store)})
    return reader.get_state(config(thread_id))


def snapshot(manager, thread_id: str) -> tuple:  # noqa: ANN001
    """Everything get_state() shows: values, next, interrupts, the checkpoint."""
    s = state(manager, thread_id)
    return (s.values, s.next, s.interrupts, s.config["configurable"].get("checkpoint_id"))


def recorded(manager, run_id: str) -> int:  # noqa: ANN001
    with manager.store.reading() as conn:
        return conn.execute(
            select(func.count()).select_from(GraphWriteRow).where(GraphWriteRow.run_id == run_id)
        ).scalar()


def blobs(manager, thread_id: str) -> int | None:  # noqa: ANN001
    """PostgresSaver keeps channel values apart, in checkpoint_blobs (SqliteSaver: inline)."""
    with manager.store.reading() as conn:
        if conn.dialect.name != "postgresql":
            return None
        return conn.execute(
            text("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = :t"), {"t": thread_id}
        ).scalar()


def finish(manager, run_id: str) -> None:  # noqa: ANN001
    assert manager.store.finish_run(run_id, RunStatus.success)[0]


def test_a_run_that_lost_its_claim_writes_no_checkpoint(manager):
    thread_id = f"fence-{uuid.uuid4().hex[:10]}"
    run_id, checkpointer = claimed_run(manager, thread_id)
    graph = GRAPH.copy(update={"checkpointer": checkpointer})
    graph.invoke({"log": []}, config(thread_id))  # stops at interrupt()
    kept = snapshot(manager, thread_id)
    assert kept[0]["log"] == ["first"] and recorded(manager, run_id) > 0

    # The reaper ends the run (lease expired): the attempt's next write is refused.
    assert manager.store.finish_run(run_id, RunStatus.error, error="worker lost")[0]
    with pytest.raises(FencedOffError):
        graph.invoke(Command(resume="too late"), config(thread_id))
    assert snapshot(manager, thread_id) == kept


def test_rollback_deletes_the_runs_checkpoints_and_its_writes_under_older_ones(manager):
    thread_id = f"rollback-{uuid.uuid4().hex[:10]}"
    asking, checkpointer = claimed_run(manager, thread_id)
    GRAPH.copy(update={"checkpointer": checkpointer}).invoke({"log": []}, config(thread_id))
    finish(manager, asking)
    waiting = snapshot(manager, thread_id)
    assert waiting[1] == ("ask",) and [i.value for i in waiting[2]] == ["approve?"]
    checkpoints_before = len(list(RunCheckpointer(manager.store).list(config(thread_id))))
    blobs_before = blobs(manager, thread_id)

    # The resuming run writes the answer under the waiting checkpoint, then new checkpoints.
    resuming, checkpointer = claimed_run(manager, thread_id)
    graph = GRAPH.copy(update={"checkpointer": checkpointer})
    graph.invoke(Command(resume="yes"), config(thread_id))
    if blobs_before is not None:
        assert blobs(manager, thread_id) > blobs_before
    assert state(manager, thread_id).values == {"log": ["first", "ask", "last"], "answer": "yes"}

    assert manager.cancel(resuming, action="rollback")
    assert snapshot(manager, thread_id) == waiting  # the interrupt is pending again
    assert len(list(RunCheckpointer(manager.store).list(config(thread_id)))) == checkpoints_before
    assert recorded(manager, resuming) == 0 and recorded(manager, asking) > 0
    assert blobs(manager, thread_id) == blobs_before
    with pytest.raises(FencedOffError):  # and the rolled-back attempt writes nothing more
        graph.invoke(Command(resume="still yes"), config(thread_id))
    # Its process has stopped: it writes the run's end, as a worker does (signals).
    token = checkpointer.fence.token
    assert manager.store.finish_run(resuming, RunStatus.interrupted, token=token)[0]

    # The thread goes on from the pending interrupt as if the rolled-back run never ran.
    answering, checkpointer = claimed_run(manager, thread_id)
    GRAPH.copy(update={"checkpointer": checkpointer}).invoke(
        Command(resume="no"), config(thread_id)
    )
    assert state(manager, thread_id).values == {"log": ["first", "ask", "last"], "answer": "no"}


def test_rollback_restores_the_pending_writes_a_run_replaced(manager):
    """A resume re-sends, and LangGraph's savers upsert, pending writes already stored under
    the waiting checkpoint (the earlier run's `update`, its resume values): rolling the
    resuming run back must put those back, not delete them."""
    thread_id = f"replaced-{uuid.uuid4().hex[:10]}"

    def run(command_or_input):  # noqa: ANN001, ANN202
        run_id, checkpointer = claimed_run(manager, thread_id)
        graph = TWO_QUESTIONS.copy(update={"checkpointer": checkpointer})
        graph.invoke(command_or_input, config(thread_id))
        return run_id, checkpointer

    def read():  # noqa: ANN202
        reader = TWO_QUESTIONS.copy(update={"checkpointer": RunCheckpointer(manager.store)})
        s = reader.get_state(config(thread_id))
        return s.values, s.next, [i.value for i in s.interrupts]

    first, _ = run({"a": 1})
    finish(manager, first)
    second, _ = run(Command(update={"a": 5}, resume="x"))
    finish(manager, second)
    before = read()
    assert before == ({"a": 5}, ("ask_twice",), ["second?"])

    third, checkpointer = run(Command(resume="y"))
    assert read()[0] == {"a": 5, "answers": ["x", "y"]}
    assert manager.cancel(third, action="rollback")
    assert read() == before
    token = checkpointer.fence.token
    assert manager.store.finish_run(third, RunStatus.interrupted, token=token)[0]

    fourth, _ = run(Command(resume="z"))
    assert read()[0] == {"a": 5, "answers": ["x", "z"]}


def test_the_state_of_a_thread_whose_assistant_is_not_registered_here(manager, backend):
    from runqueue import SyncRunManager, UnknownAssistantError, assistant, create_app

    thread_id = f"unknown-{uuid.uuid4().hex[:10]}"
    name = f"only_elsewhere_{uuid.uuid4().hex[:6]}"
    elsewhere = create_app(backend.settings, name=f"elsewhere-{thread_id}")

    def only_elsewhere(context) -> None:  # noqa: ANN001
        return None

    assistant(elsewhere, name=name, shared=False)(only_elsewhere)
    SyncRunManager(elsewhere).create(thread_id, name)
    with pytest.raises(UnknownAssistantError, match=name):
        manager.state(thread_id)


def test_interrupt_keeps_what_the_run_wrote(manager):
    thread_id = f"interrupt-{uuid.uuid4().hex[:10]}"
    run_id, checkpointer = claimed_run(manager, thread_id)
    GRAPH.copy(update={"checkpointer": checkpointer}).invoke({"log": []}, config(thread_id))
    kept = snapshot(manager, thread_id)
    assert manager.cancel(run_id, action="interrupt")
    assert snapshot(manager, thread_id) == kept
    assert recorded(manager, run_id) > 0

"""The graphs of the sync/async matrix (tests/integration/test_graph_matrix.py, the graph
kill and interrupt-storm fault tests): one shape, three kinds.

work -> gate. `work` ticks `ticks` times, one every 10 ms (time.sleep in a sync node,
asyncio.sleep in an async one); each tick writes one journal line (run, node, tick,
monotonic time) and one `custom` event, so what really executed, and when, is judged from
the node's own side effects. `gate` asks a human through interrupt() when the input says
`ask`. Both nodes append `node@run_id` to `log`; `label` is the run's input, so a rollback
can be checked value by value.

- `sync`: both nodes plain functions;
- `async`: both nodes `async def`;
- `mixed`: an async `work` and a sync `gate`.

Each kind is registered once per worker pool (`matrix-<kind>-<pool>`), so that a test picks
the pool a run executes on by its assistant: a worker serves, and consumes the queues of,
only the assistants its RUNQUEUE_IMPORTS registers (register_prefork, register_threads)."""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from celery import Celery
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.types import StreamWriter, interrupt

from runqueue.journal import record
from runqueue.langgraph import langgraph_assistant

TICK_SECONDS = 0.01
KINDS = ("sync", "async", "mixed")
POOLS = ("prefork", "threads")
QUESTION = "Go on?"


class MatrixState(TypedDict, total=False):
    label: str  # the run's input, to check that a rollback removed it too
    log: Annotated[list[str], operator.add]  # node@run_id, per node that completed
    ticks: int  # how many 10 ms ticks `work` does
    ask: bool  # `gate` asks a human (interrupt) before the graph ends
    answer: Any  # what the human answered
    journal: str | None  # a file for one line per tick


def assistant_name(kind: str, pool: str) -> str:
    """The assistant of this graph kind that only the workers of this pool serve."""
    return f"matrix-{kind}-{pool}"


def _run_of(config: RunnableConfig) -> tuple[str, str]:
    metadata = config.get("metadata") or {}
    return metadata.get("run_id", "-"), metadata.get("thread_id", "-")


def _mark(node: str, config: RunnableConfig) -> list[str]:
    return [f"{node}@{_run_of(config)[0]}"]


def _tick(state: MatrixState, config: RunnableConfig, writer: StreamWriter, tick: int) -> None:
    """One tick's side effects: its custom event, and its journal line on disk."""
    writer({"node": "work", "tick": tick})
    if state.get("journal"):
        run_id, thread_id = _run_of(config)
        record(
            state["journal"],
            run_id=run_id,
            thread_id=thread_id,
            event="tick",
            node="work",
            tick=tick,
            monotonic=time.monotonic(),
        )


def work_sync(state: MatrixState, config: RunnableConfig, writer: StreamWriter) -> dict[str, Any]:
    for tick in range(1, int(state.get("ticks") or 0) + 1):
        time.sleep(TICK_SECONDS)
        _tick(state, config, writer, tick)
    return {"log": _mark("work", config)}


async def work_async(
    state: MatrixState, config: RunnableConfig, writer: StreamWriter
) -> dict[str, Any]:
    for tick in range(1, int(state.get("ticks") or 0) + 1):
        await asyncio.sleep(TICK_SECONDS)
        _tick(state, config, writer, tick)
    return {"log": _mark("work", config)}


def gate_sync(state: MatrixState, config: RunnableConfig) -> dict[str, Any]:
    if not state.get("ask"):
        return {"log": _mark("gate", config)}
    return {"log": _mark("gate", config), "answer": interrupt({"question": QUESTION})}


async def gate_async(state: MatrixState, config: RunnableConfig) -> dict[str, Any]:
    await asyncio.sleep(0)
    if not state.get("ask"):
        return {"log": _mark("gate", config)}
    return {"log": _mark("gate", config), "answer": interrupt({"question": QUESTION})}


NODES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "sync": (work_sync, gate_sync),
    "async": (work_async, gate_async),
    "mixed": (work_async, gate_sync),
}


def build(kind: str) -> Pregel:
    """The graph of this kind, compiled without a checkpointer (runqueue gives it one)."""
    work, gate = NODES[kind]
    graph = StateGraph(MatrixState)
    graph.add_node("work", work)
    graph.add_node("gate", gate)
    graph.add_edge(START, "work")
    graph.add_edge("work", "gate")
    graph.add_edge("gate", END)
    return graph.compile()


def _register(app: Celery, pools: tuple[str, ...]) -> None:
    for pool in pools:
        for kind in KINDS:
            langgraph_assistant(
                app,
                assistant_name(kind, pool),
                build(kind),
                description=f"The matrix's {kind} graph, served by {pool} workers.",
            )


def register(app: Celery) -> None:
    """Every matrix assistant: for the test process's manager and the API server."""
    _register(app, POOLS)


def register_prefork(app: Celery) -> None:
    """Only the assistants a prefork worker of the matrix serves."""
    _register(app, ("prefork",))


def register_threads(app: Celery) -> None:
    """Only the assistants a threads-pool worker of the matrix serves."""
    _register(app, ("threads",))

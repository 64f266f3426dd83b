"""Graphs with `async def` nodes and factories of every kind the LangGraph Agent Server takes,
on one app (tests/integration/test_async_graphs.py): `slow` is the issue's one-node graph
awaiting asyncio.sleep; `mixed` has a sync and an async node; `per_run` is an async factory
taking the run's config; `managed` an async context manager factory; `planned` a StateGraph
given uncompiled."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from celery import Celery
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from runqueue import create_app
from runqueue.langgraph import langgraph_assistant


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    pause: float
    marker: str


async def work(state: State, config: RunnableConfig) -> dict[str, Any]:
    await asyncio.sleep(float(state.get("pause") or 0.05))
    return {"log": ["async work"]}


def count(state: State) -> dict[str, Any]:
    time.sleep(0.01)
    return {"log": ["sync count"]}


def _graph(*nodes: Any) -> StateGraph:
    graph = StateGraph(State)
    previous = START
    for node in nodes:
        graph.add_node(node.__name__, node)
        graph.add_edge(previous, node.__name__)
        previous = node.__name__
    graph.add_edge(previous, END)
    return graph


async def per_run(config: RunnableConfig) -> Any:
    """Built for every run from its configurable, as the Agent Server builds it."""
    label = (config.get("configurable") or {}).get("label", "plain")

    async def labelled(state: State) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"log": [f"label {label}"]}

    return _graph(labelled).compile()


OPEN: list[bool] = []  # the managed factory's resource, while open (per process)


async def uses_the_resource(state: State) -> dict[str, Any]:
    if not OPEN:
        raise RuntimeError("the factory's resource was closed before the run used it")
    await asyncio.sleep(0)
    return {"log": ["resource used"]}


@contextlib.asynccontextmanager
async def managed() -> AsyncIterator[Any]:
    """A factory holding a resource for the graph's lifetime (a client, a pool: an MCP
    session), entered for each run and left when the run's stream ends."""
    OPEN.append(True)
    try:
        yield _graph(uses_the_resource).compile()
    finally:
        OPEN.pop()


def exits(state: State) -> dict[str, Any]:
    raise SystemExit(3)  # a tool calling sys.exit(), argparse in a node


def _left_behind(path: str) -> None:
    time.sleep(1.0)
    Path(path).write_text("done")


async def gives_up_waiting(state: State) -> dict[str, Any]:
    """Stops waiting for a sync call that goes on in the executor: the run must not end
    (and free the thread) before that call has."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(_left_behind, state["marker"]), 0.05)
    return {"log": ["gave up"]}


def register(app: Celery) -> None:
    langgraph_assistant(app, "slow", _graph(work).compile())
    langgraph_assistant(app, "mixed", _graph(count, work).compile())
    langgraph_assistant(app, "per_run", per_run)
    langgraph_assistant(app, "managed", managed)
    langgraph_assistant(app, "planned", _graph(count))
    langgraph_assistant(app, "exits", _graph(exits).compile())
    langgraph_assistant(app, "gives_up", _graph(gives_up_waiting).compile())


app = create_app()
register(app)

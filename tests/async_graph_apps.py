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
from typing import Annotated, Any, TypedDict

from celery import Celery
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from runqueue import create_app
from runqueue.langgraph import langgraph_assistant


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    pause: float


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


@contextlib.asynccontextmanager
async def managed() -> AsyncIterator[Any]:
    """A factory holding a resource for the graph's lifetime (a client, a pool)."""
    yield _graph(work).compile()


def register(app: Celery) -> None:
    langgraph_assistant(app, "slow", _graph(work).compile())
    langgraph_assistant(app, "mixed", _graph(count, work).compile())
    langgraph_assistant(app, "per_run", per_run)
    langgraph_assistant(app, "managed", managed)
    langgraph_assistant(app, "planned", _graph(count))


app = create_app()
register(app)

"""The `noop` graph of the HTTP API benchmark, which both servers run: the reference server
loads this file by path (langgraph.json), so it imports LangGraph and nothing of runqueue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict  # pydantic reads the graph's schema from it


class NoopState(TypedDict, total=False):
    seconds: float  # the node waits this long, silently (a held stream's run)
    done: bool


def _noop(state: NoopState) -> dict[str, Any]:
    if state.get("seconds"):
        time.sleep(state["seconds"])
    return {"done": True}


async def _noop_async(state: NoopState) -> dict[str, Any]:
    if state.get("seconds"):
        await asyncio.sleep(state["seconds"])
    return {"done": True}


def build_noop_graph() -> Any:
    """One node, in both forms: runqueue's worker streams graphs synchronously, the reference
    asynchronously. A sync node would hold one of the reference's few executor threads while
    it sleeps (6 on 2 cores): its held-stream runs would stall the whole server."""
    graph = StateGraph(NoopState)
    graph.add_node("noop", RunnableLambda(_noop, afunc=_noop_async))
    graph.add_edge(START, "noop")
    graph.add_edge("noop", END)
    return graph.compile()


noop = build_noop_graph()

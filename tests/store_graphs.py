"""The graph the Store tests run, on runqueue and on the LangGraph reference server alike
(tests/reference/langgraph.json points here): long-term memory across threads, through each
of the three ways a node reaches LangGraph's Store, unchanged.

- input `remember`: the `remember` node (an injected `store` argument) puts the user's
  favourite colour at ("preferences",) / "color";
- always: `recall` reads it back with `runtime.store` into `color` (None if none), and
  `confirm` reads it with `get_store()` into `confirmed` (the two reads agree).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

NAMESPACE = ("preferences",)


class MemoryState(TypedDict, total=False):
    remember: str
    color: str | None
    confirmed: bool


def remember(state: MemoryState, store: BaseStore) -> dict[str, Any]:
    if state.get("remember"):
        store.put(NAMESPACE, "color", {"color": state["remember"]})
    return {}


def recall(state: MemoryState, runtime: Runtime) -> dict[str, Any]:
    item = runtime.store.get(NAMESPACE, "color")
    return {"color": None if item is None else item.value["color"]}


async def confirm(state: MemoryState) -> dict[str, Any]:
    item = await get_store().aget(NAMESPACE, "color")
    seen = None if item is None else item.value["color"]
    return {"confirmed": seen == state.get("color")}


builder = StateGraph(MemoryState)
builder.add_node("remember", remember)
builder.add_node("recall", recall)
builder.add_node("confirm", confirm)
builder.add_edge(START, "remember")
builder.add_edge("remember", "recall")
builder.add_edge("recall", "confirm")
builder.add_edge("confirm", END)
memory = builder.compile()

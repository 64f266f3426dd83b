"""The graph the run-option tests run (tests/integration/test_api_run_options.py): every
option of a LangGraph run reaches it, and each node proves it by what it writes.

`greet` writes the runtime context it got (`seen_context`): a dataclass, as LangGraph's
templates declare it, which a key it lacks would fail to build unless the context_schema's
filter dropped it; `inner` runs in the `sub` subgraph (its chunks carry the `sub:<task id>`
namespace); `finish` closes. Three supersteps: a breakpoint before `finish` stops the run
with `finish` next, and durability `exit` writes one checkpoint where `sync` writes one per
step.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


@dataclass
class OptionContext:
    user: str = "nobody"
    tone: str = "plain"


class OptionState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    seen_context: dict[str, Any] | None
    inner: str


class InnerState(TypedDict, total=False):
    inner: str


def greet(state: OptionState, runtime: Runtime[OptionContext]) -> dict[str, Any]:
    seen = asdict(runtime.context) if runtime.context is not None else None
    return {"steps": ["greet"], "seen_context": seen}


def inner(state: InnerState) -> dict[str, Any]:
    return {"inner": "done"}


def finish(state: OptionState) -> dict[str, Any]:
    return {"steps": ["finish"]}


def build_subgraph() -> Any:
    graph = StateGraph(InnerState)
    graph.add_node("inner", inner)
    graph.add_edge(START, "inner")
    graph.add_edge("inner", END)
    return graph.compile()


def build() -> Any:
    graph = StateGraph(OptionState, context_schema=OptionContext)
    graph.add_node("greet", greet)
    graph.add_node("sub", build_subgraph())
    graph.add_node("finish", finish)
    graph.add_edge(START, "greet")
    graph.add_edge("greet", "sub")
    graph.add_edge("sub", "finish")
    graph.add_edge("finish", END)
    return graph.compile()


options = build()

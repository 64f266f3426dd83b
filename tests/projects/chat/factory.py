"""A graph factory, imported by file path; `langgraph dev` calls it for each run."""

from __future__ import annotations

from agent.state import State
from langgraph.graph import END, START, StateGraph


def count(state: State) -> State:
    return {"reply": str(len(state["name"]))}


def make_graph():
    """Counts the letters of a name."""
    builder = StateGraph(State).add_node("count", count)
    return builder.add_edge(START, "count").add_edge("count", END).compile()

"""A StateGraph, not compiled, imported as a module (the `./src` dependency)."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.state import State


def shout(state: State) -> State:
    return {"reply": state["name"].upper()}


builder = StateGraph(State).add_node("shout", shout).add_edge(START, "shout").add_edge("shout", END)

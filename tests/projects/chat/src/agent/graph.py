"""A compiled graph, imported by file path: greets with the project's environment."""

from __future__ import annotations

import os

from langgraph.graph import END, START, StateGraph

from agent.state import State


def greet(state: State) -> State:
    greeting = f"{os.environ['GREETING']}, {state['name']}{os.environ['PUNCTUATION']}"
    return {"reply": f"{greeting} ({os.environ['SHADOWED']})"}


graph = StateGraph(State).add_node("greet", greet).add_edge(START, "greet").add_edge("greet", END)
graph = graph.compile()

"""Graph factories, imported by file path: one without an argument (built once per process),
and an async one that takes the run's config (built for each run)."""

from __future__ import annotations

from agent.state import State
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


def count(state: State) -> State:
    return {"reply": str(len(state["name"]))}


def make_graph():
    """Counts the letters of a name."""
    builder = StateGraph(State).add_node("count", count)
    return builder.add_edge(START, "count").add_edge("count", END).compile()


async def make_styled(config: RunnableConfig):
    """Answers in the style the run's config asks for."""
    style = config.get("configurable", {}).get("style", "plain")

    def answer(state: State) -> State:
        return {"reply": f"{style}: {state['name']}"}

    builder = StateGraph(State).add_node("answer", answer)
    return builder.add_edge(START, "answer").add_edge("answer", END).compile()

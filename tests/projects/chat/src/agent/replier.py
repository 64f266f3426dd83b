"""A compiled graph whose node is `async def`: runqueue runs it on an event loop."""

from __future__ import annotations

import asyncio

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agent.state import State


async def reply(state: State, config: RunnableConfig) -> State:
    await asyncio.sleep(0.01)
    thread = config["configurable"]["thread_id"]
    return {"reply": f"{state['name']}, awaited on thread {thread}"}


graph = StateGraph(State).add_node("reply", reply).add_edge(START, "reply").add_edge("reply", END)
graph = graph.compile()

"""A graph folder made for `langgraph dev`, unchanged: async nodes, a factory taking the run's
config, a subgraph, a runtime context and a chat model (langchain-core's fake one: no
network). tests/integration/test_project_conformance.py serves it with `langgraph dev` and
with `runqueue --config langgraph.json` and compares what each streams."""

from __future__ import annotations

import asyncio
import operator
import os
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime


@dataclass
class Context:
    user: str = "anonymous"
    style: str = "short"


class State(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]
    messages: Annotated[list[AnyMessage], add_messages]


async def plan(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    get_stream_writer()({"planning": state.get("topic"), "for": runtime.context.user})
    return {"notes": [f"plan {state.get('topic')} for {runtime.context.user}"]}


async def draft(state: State) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"notes": ["draft"]}


def check(state: State) -> dict[str, Any]:
    return {"notes": ["checked"]}


review = (
    StateGraph(State)
    .add_node(draft)
    .add_node(check)
    .add_edge(START, "draft")
    .add_edge("draft", "check")
    .add_edge("check", END)
    .compile()
)


def _reply_node(style: str) -> Any:
    async def reply(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        text = f"{style} note on {state.get('topic')} for {runtime.context.user}, "
        text += os.environ.get("AGENT_SIGNATURE", "unsigned")
        model = GenericFakeChatModel(messages=iter([AIMessage(content=text, id="reply")]))
        message = await model.ainvoke([HumanMessage(state.get("topic") or "")])
        return {"messages": [AIMessage(content=message.content, id="reply")]}

    return reply


async def make_graph(config: RunnableConfig) -> Any:
    """Built for each run from its config, as `langgraph dev` builds it: the run's context
    is mirrored into its configurable (`style`)."""
    style = (config.get("configurable") or {}).get("style", "short")
    graph = StateGraph(State, context_schema=Context)
    graph.add_node(plan)
    graph.add_node("review", review)
    graph.add_node("reply", _reply_node(style))
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "review")
    graph.add_edge("review", "reply")
    graph.add_edge("reply", END)
    return graph.compile()

"""The graph the HTTP API tests run, on runqueue and on the LangGraph reference server alike
(langgraph.json points here): one graph whose input picks what it does.

- `seconds`: the `work` node sleeps that long, silently (a long quiet run);
- `fail`: `work` raises ValueError("boom");
- `ask`: `review` calls interrupt() and waits for a resume;
- `pad`: `work` copies it into `pad_copy`, so the values grow to twice the input;
- always: a custom event from `work`, and a chat model's tokens from `respond`.

`chat` is what chat front ends run (tests/js/use_stream.mjs drives it with the official React
hook): a `messages` list, and one node that answers the last message with a chat model's
tokens, after sleeping `seconds` if the input says so.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt


class AgentState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    seconds: float
    fail: bool
    ask: bool
    answer: Any
    reply: str
    pad: str
    pad_copy: str


def work(state: AgentState) -> dict[str, Any]:
    get_stream_writer()({"progress": "working"})
    if state.get("seconds"):
        time.sleep(state["seconds"])
    if state.get("fail"):
        raise ValueError("boom")
    if state.get("pad"):
        return {"steps": ["work"], "pad_copy": state["pad"]}
    return {"steps": ["work"]}


def review(state: AgentState) -> dict[str, Any]:
    if not state.get("ask"):
        return {"steps": ["review"]}
    return {"steps": ["review"], "answer": interrupt("approve?")}


def respond(state: AgentState) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="all done here")]))
    return {"steps": ["respond"], "reply": model.invoke("go").content}


def build() -> Any:
    graph = StateGraph(AgentState)
    graph.add_node("work", work)
    graph.add_node("review", review)
    graph.add_node("respond", respond)
    graph.add_edge(START, "work")
    graph.add_edge("work", "review")
    graph.add_edge("review", "respond")
    graph.add_edge("respond", END)
    return graph.compile()


agent = build()


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    seconds: float


def answer(state: ChatState) -> dict[str, Any]:
    if state.get("seconds"):
        time.sleep(state["seconds"])
    said = state["messages"][-1].content
    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"you said {said}")]))
    return {"messages": [model.invoke(state["messages"])]}


def build_chat() -> Any:
    graph = StateGraph(ChatState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


chat = build_chat()

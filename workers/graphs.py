"""An example LangGraph graph, deterministic: no LLM, no network.

plan -> research -> review -> respond. `research` works for `pause` seconds (so that a run
can be cancelled mid-node) and reports progress as `custom` events; `review` asks a human
through interrupt() when the input says `ask`; `respond` is a chat model, langchain-core's
fake streaming one, so that the `messages` stream mode carries its reply token by token.
Each node appends `node@run_id` to `log`: the thread's state shows which run did what.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.pregel import Pregel
from langgraph.types import interrupt

from runqueue.journal import record

TICK_SECONDS = 0.05


class ResearchState(TypedDict, total=False):
    topic: str
    log: Annotated[list[str], operator.add]
    messages: Annotated[list[AnyMessage], add_messages]
    pause: float  # seconds `research` works
    ask: bool  # `review` asks a human (interrupt) before `respond`
    token_delay: float  # seconds between the reply's tokens, to watch them stream
    approval: Any  # what the human answered
    journal: str | None  # a file for one line per research tick, for tests


def _mark(node: str, config: RunnableConfig) -> list[str]:
    return [f"{node}@{config.get('metadata', {}).get('run_id', '-')}"]


def plan(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    topic = state.get("topic") or "queues"
    return {"log": _mark("plan", config), "messages": [HumanMessage(f"Tell me about {topic}")]}


def research(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    write = get_stream_writer()
    started = time.monotonic()
    ticks = round(float(state.get("pause") or 0) / TICK_SECONDS)
    for tick in range(1, ticks + 1):
        # By the clock, not by sleeps: a process paused past its ticks catches up at once.
        while time.monotonic() < started + tick * TICK_SECONDS:
            time.sleep(0.005)
        write({"research": tick, "of": ticks})
        if state.get("journal"):
            metadata = config.get("metadata", {})
            record(
                state["journal"],
                run_id=metadata.get("run_id", "-"),
                thread_id=metadata.get("thread_id", "-"),
                event="tick",
                tick=tick,
            )
    return {"log": _mark("research", config)}


def review(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    if not state.get("ask"):
        return {"log": _mark("review", config)}
    answer = interrupt({"question": f"Publish the note on {state.get('topic') or 'queues'}?"})
    return {"log": _mark("review", config), "approval": answer}


def respond(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    topic = state.get("topic") or "queues"
    text = f"Here is a short note on {topic}: durable, fenced and streamed."
    model = GenericFakeChatModel(messages=iter([AIMessage(content=text)]))
    reply = None
    for chunk in model.stream(state.get("messages") or []):  # one word or space per chunk
        reply = chunk if reply is None else reply + chunk
        time.sleep(float(state.get("token_delay") or 0))
    message = AIMessage(content=reply.content, id=reply.id)
    return {"log": _mark("respond", config), "messages": [message]}


def build_research_graph(nodes: tuple[Any, ...] = (plan, research, review, respond)) -> Pregel:
    """The graph, compiled without a checkpointer: runqueue gives it one per run.
    Registered as the assistant `research` (workers.assistants.register). `nodes`: the four
    nodes by name (benchmarks/graph_async.py gives their async twins)."""
    graph = StateGraph(ResearchState)
    for node in nodes:
        graph.add_node(node.__name__, node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "research")
    graph.add_edge("research", "review")
    graph.add_edge("review", "respond")
    graph.add_edge("respond", END)
    return graph.compile()

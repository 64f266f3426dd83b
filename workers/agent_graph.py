"""An example agent as LangGraph projects write them, deterministic: no LLM, no network.

agent -> tools -> agent -> review. `agent` is an async node calling a tool-calling chat model
(workers/scripted_model.py, streamed token by token); `tools` is LangGraph's ToolNode with
two tools, `get_weather` (async) and `get_timezone` (sync); `review` is a compiled subgraph
(`check` -> `approve`) used as a node. Who the user is and the answer's tone come from the
run's runtime context (`AgentContext`), read by `agent` and by the subgraph. Each node and
tool appends one line to the `journal` file when given one (runqueue.journal), and each node
appends `node@run_id` to `log`: what ran is judged from those.
"""

from __future__ import annotations

import asyncio
import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import InjectedState, ToolNode, tools_condition
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime

from runqueue.journal import record
from workers.scripted_model import SYSTEM_PROMPT, ScriptedChatModel

WEATHER = {"Paris": "sunny, 21 °C", "Oslo": "snow, -3 °C", "Lima": "cloudy, 18 °C"}
TIMEZONES = {"Paris": "Europe/Paris", "Oslo": "Europe/Oslo", "Lima": "America/Lima"}


@dataclass
class AgentContext:
    """The run's runtime context (`context` on a run): who asks, and how to answer."""

    user: str = "friend"
    tone: str = "plain"  # `plain` or `cheerful`


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    log: Annotated[list[str], operator.add]
    review: str  # the review subgraph's verdict
    token_delay: float  # seconds between the model's tokens, to watch them stream
    journal: str | None  # a file for one line per node or tool execution, for tests


class ReviewInput(TypedDict, total=False):
    messages: list[AnyMessage]
    journal: str | None


class ReviewOutput(TypedDict, total=False):
    # Without the parent's `log` on the way in, the subgraph hands back only its own entries
    # (the parent's reducer would append the parent's log to itself again).
    log: Annotated[list[str], operator.add]
    review: str


class ReviewState(ReviewInput, ReviewOutput, total=False):
    findings: list[str]  # the subgraph's own: what `check` found wrong


def _journal(path: str | None, config: RunnableConfig, event: str, **fields: Any) -> None:
    """One line for what just executed, in the run's name, when the input named a journal."""
    if path:
        metadata = config.get("metadata", {})
        run_id, thread_id = metadata.get("run_id", "-"), metadata.get("thread_id", "-")
        record(path, run_id=run_id, thread_id=thread_id, event=event, **fields)


def _mark(node: str, config: RunnableConfig) -> list[str]:
    return [f"{node}@{config.get('metadata', {}).get('run_id', '-')}"]


def _context(runtime: Runtime[AgentContext]) -> AgentContext:
    """The run's context, or the defaults when the run gave none."""
    return runtime.context or AgentContext()


@tool
async def get_weather(
    city: str, config: RunnableConfig, state: Annotated[dict[str, Any], InjectedState]
) -> str:
    """The weather in a city now, from a (pretend) remote weather service."""
    await asyncio.sleep(0.01)  # the service's round trip
    _journal(state.get("journal"), config, "tool", tool="get_weather", city=city)
    return WEATHER.get(city, "unknown weather")


@tool
def get_timezone(
    city: str, config: RunnableConfig, state: Annotated[dict[str, Any], InjectedState]
) -> str:
    """The IANA time zone of a city."""
    _journal(state.get("journal"), config, "tool", tool="get_timezone", city=city)
    return TIMEZONES.get(city, "UTC")


TOOLS = [get_weather, get_timezone]


async def agent(
    state: AgentState, config: RunnableConfig, runtime: Runtime[AgentContext]
) -> dict[str, Any]:
    context = _context(runtime)
    model = ScriptedChatModel(token_delay=float(state.get("token_delay") or 0)).bind_tools(TOOLS)
    prompt = SystemMessage(SYSTEM_PROMPT.format(user=context.user, tone=context.tone))
    reply = await model.ainvoke([prompt, *state.get("messages", [])], config)
    calls = [call["name"] for call in reply.tool_calls]
    _journal(state.get("journal"), config, "node", node="agent", user=context.user, calls=calls)
    return {"messages": [reply], "log": _mark("agent", config)}


async def check(
    state: ReviewState, config: RunnableConfig, runtime: Runtime[AgentContext]
) -> dict[str, Any]:
    answer = state["messages"][-1]
    findings = []
    if not isinstance(answer, AIMessage) or answer.tool_calls:
        findings.append("the last message is not an answer")
    if _context(runtime).user not in answer.text:
        findings.append(f"the answer does not address {_context(runtime).user}")
    _journal(state.get("journal"), config, "node", node="review:check", findings=findings)
    return {"findings": findings, "log": _mark("review:check", config)}


async def approve(state: ReviewState, config: RunnableConfig) -> dict[str, Any]:
    findings = state.get("findings") or []
    verdict = "approved" if not findings else "rejected: " + "; ".join(findings)
    _journal(state.get("journal"), config, "node", node="review:approve", verdict=verdict)
    return {"review": verdict, "log": _mark("review:approve", config)}


def build_review_graph() -> Pregel:
    """The review subgraph: checks the final answer, then gives its verdict."""
    graph = StateGraph(
        ReviewState,
        context_schema=AgentContext,
        input_schema=ReviewInput,
        output_schema=ReviewOutput,
    )
    graph.add_node("check", check)
    graph.add_node("approve", approve)
    graph.add_edge(START, "check")
    graph.add_edge("check", "approve")
    graph.add_edge("approve", END)
    return graph.compile()


def build_agent_graph() -> Pregel:
    """The graph, compiled without a checkpointer: runqueue gives it one per run.
    Registered as the assistant `weather_agent` (workers.assistants.register)."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_node("review", build_review_graph())
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: "review"})
    graph.add_edge("tools", "agent")
    graph.add_edge("review", END)
    return graph.compile()

"""The example agent (workers/agent_graph.py) as a runqueue assistant, on both backends with a
real prefork worker: its async nodes run, its chat model's tokens stream live, both tools run
(one async), the review subgraph runs and streams under its namespace, and the run's context
reaches the nodes. What ran is judged from the agent's own journal lines and the thread's
state, not from the run's status alone."""

from __future__ import annotations

import uuid

from runqueue import RunStatus
from tests.support import StreamReader

AGENT = "weather_agent"
ANSWER = "Hello Ada! In Oslo it is snow, -3 °C, time zone Europe/Oslo. Enjoy your day!"


def question(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}], "token_delay": 0.02}


def replies(events) -> dict[str, str]:  # noqa: ANN001
    """Each chat model reply in the stream, its tokens joined, by message id in order."""
    joined: dict[str, str] = {}
    for event in events:
        if event.event == "messages" and event.data[0]["type"] == "AIMessageChunk":
            chunk = event.data[0]
            joined[chunk["id"]] = joined.get(chunk["id"], "") + chunk["content"]
    return joined


def test_the_agent_streams_calls_both_tools_runs_its_subgraph_and_answers(manager, worker, journal):
    thread_id = f"agent-{uuid.uuid4().hex[:12]}"
    run = manager.create(
        thread_id,
        AGENT,
        kwargs={
            "input": {**question("What is the weather in Oslo?"), "journal": str(journal)},
            "context": {"user": "Ada", "tone": "cheerful"},
            "stream_mode": ["updates", "messages"],
            "stream_subgraphs": True,
        },
    )
    reader = StreamReader(manager, run.run_id).begin()
    events = reader.result(timeout=60)
    final = manager.get(run.run_id)
    assert final.status is RunStatus.success, final.error

    # `messages`: both model replies, token by token, from the `agent` node, live.
    tokens = [
        (at, e.data) for at, e in reader.received
        if e.event == "messages" and e.data[0]["type"] == "AIMessageChunk"
    ]  # fmt: skip
    assert len(tokens) > 20
    assert {data[1]["langgraph_node"] for _, data in tokens} == {"agent"}
    assert list(replies(events).values()) == [
        "Let me call get_weather and get_timezone for Oslo.", ANSWER,
    ]  # fmt: skip
    assert tokens[0][0] < final.ended_at.timestamp() - 0.2  # streamed while it ran
    calls = [
        call["name"] for _, data in tokens for call in data[0]["tool_call_chunks"] if call["name"]
    ]
    assert calls == ["get_weather", "get_timezone"]
    tool_results = {
        e.data[0]["name"]: e.data[0]["content"]
        for e in events
        if e.event == "messages" and e.data[0]["type"] == "tool"
    }
    assert tool_results == {"get_weather": "snow, -3 °C", "get_timezone": "Europe/Oslo"}

    # `updates`: the root graph's nodes, then the review subgraph's under its namespace.
    root = [next(iter(e.data)) for e in events if e.event == "updates"]
    assert root == ["agent", "tools", "agent", "review"]
    sub = [(e.event.split(":")[0], next(iter(e.data))) for e in events if "|" in e.event]
    assert sub == [("updates|review", "check"), ("updates|review", "approve")]

    # The journal: each tool ran once, in this run; the nodes read the run's context.
    lines = journal.lines(run_id=run.run_id)
    assert sorted(line["tool"] for line in lines if line["event"] == "tool") == [
        "get_timezone", "get_weather",
    ]  # fmt: skip
    nodes = [line for line in lines if line["event"] == "node"]
    assert [line["node"] for line in nodes] == ["agent", "agent", "review:check", "review:approve"]
    assert {line["user"] for line in nodes if line["node"] == "agent"} == {"Ada"}
    assert nodes[2]["findings"] == []

    # The thread's state: the whole conversation, the answer, the subgraph's verdict.
    state = manager.state(thread_id).values
    assert [m["type"] for m in state["messages"]] == ["human", "ai", "tool", "tool", "ai"]
    assert [c["name"] for c in state["messages"][1]["tool_calls"]] == calls
    assert state["messages"][-1]["content"] == ANSWER
    assert state["review"] == "approved"
    assert state["log"] == [f"{node}@{run.run_id}" for node in ("agent", "agent")] + [
        f"review:{node}@{run.run_id}" for node in ("check", "approve")
    ]
    assert final.result == state


def test_a_next_turn_continues_the_conversation_with_its_own_context(manager, worker, journal):
    thread_id = f"agent-{uuid.uuid4().hex[:12]}"
    first = manager.create(
        thread_id,
        AGENT,
        kwargs={"input": question("Weather in Oslo?"), "context": {"user": "Ada"}},
    )
    assert manager.join(first.run_id, timeout=60).status is RunStatus.success
    # No context this time: the nodes fall back to the defaults (`friend`, plain).
    second = manager.create(
        thread_id,
        AGENT,
        kwargs={"input": {**question("And in Lima?"), "journal": str(journal)}},
    )
    assert manager.join(second.run_id, timeout=60).status is RunStatus.success
    messages = manager.state(thread_id).values["messages"]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "tool", "ai"] * 2
    assert messages[4]["content"].startswith("Ada, in Oslo it is snow")
    assert messages[-1]["content"] == "friend, in Lima it is cloudy, 18 °C, time zone America/Lima."
    assert [c["id"] for c in messages[6]["tool_calls"]] == [
        "call_get_weather_2", "call_get_timezone_2",
    ]  # fmt: skip
    assert {line["run_id"] for line in journal.lines(event="tool")} == {second.run_id}

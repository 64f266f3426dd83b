"""What `runqueue demo` plays and what it keeps of it: the runs it asks for, the record of
the runs it created by role, and the live reader of a run's stream. Read by the player
(demo.py) and by the checks (demo_checks.py) alike."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from runqueue.errors import RunQueueError, first_line
from runqueue.journal import Journal
from runqueue.records import StreamEvent
from runqueue.registry import SyncRunManager

GUARANTEES = ("reject", "interrupt", "rollback", "enqueue", "cancel", "stream", "graph")
REQUIRED_ASSISTANTS = ("echo", "steps", "noop")
GRAPH_ASSISTANT = "research"  # registered when the langgraph extra is installed
LONG_RUN = {"steps": 200, "delay": 0.1}  # 20 s unless interrupted; the demo never waits it out
STREAMED_RUN = {"steps": 5, "delay": 0.3}  # its stream is shown live under the table
# The example graph (workers/graphs.py): one run streams its reply token by token, a second
# one, working long, is rolled back midway.
GRAPH_RUN = {"input": {"topic": "runqueue", "token_delay": 0.05},
             "stream_mode": ["updates", "messages"]}  # fmt: skip
LONG_GRAPH_RUN = {"input": {"topic": "rollback", "pause": 20.0}}
# The example agent (workers/agent_graph.py): async nodes call a chat model that asks for two
# tools, the ToolNode runs them, a review subgraph approves the answer; the run's context says
# whom to address and how. Its tokens stream live, and the check reads its tool calls, its
# journal and its final answer.
AGENT_ASSISTANT = "weather_agent"  # registered beside GRAPH_ASSISTANT
AGENT_TOOLS = ("get_weather", "get_timezone")
AGENT_CONTEXT = {"user": "Ada", "tone": "cheerful"}
AGENT_QUESTION = "What is the weather in Oslo?"
AGENT_ANSWER = "Hello Ada! In Oslo it is snow, -3 °C, time zone Europe/Oslo. Enjoy your day!"
AGENT_NODES = ["agent", "agent", "review:check", "review:approve"]  # as journaled, in order
REJECT_ATTEMPTS = 3
ENQUEUED_RUNS = 4


def agent_run(journal: Path) -> dict[str, Any]:
    """The agent run's kwargs: the question, its journal, and the run's context."""
    question = {"role": "user", "content": AGENT_QUESTION}
    return {
        "input": {"messages": [question], "token_delay": 0.02, "journal": str(journal)},
        "stream_mode": ["updates", "messages"],
        "context": AGENT_CONTEXT,
    }


class DemoError(RunQueueError):
    """The demo could not complete."""


@dataclass
class Scenario:
    """The runs the demo created, by role, and what it observed along the way."""

    suffix: str
    journal_dir: Path
    runs: dict[str, str] = field(default_factory=dict)  # role -> run_id
    notes: dict[str, str] = field(default_factory=dict)  # run_id -> label in the live table
    rejected: list[str] = field(default_factory=list)  # ConflictError messages
    observed: dict[str, Any] = field(default_factory=dict)

    def thread(self, guarantee: str) -> str:
        return f"demo-{self.suffix}-{guarantee}"

    def journal(self, guarantee: str) -> Journal:
        return Journal(self.journal_dir / f"{guarantee}.jsonl")


class StreamTail(threading.Thread):
    """Follows one run's stream, as any reader on another machine would."""

    def __init__(self, manager: SyncRunManager, run_id: str):
        super().__init__(name="demo-stream", daemon=True)
        self.manager, self.run_id = manager, run_id
        self.events: list[StreamEvent] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            for event in self.manager.stream(self.run_id):
                self.events.append(event)
        except RunQueueError as exc:
            self.error = first_line(exc)

    def tokens(self) -> list[str]:
        """The chat model's reply so far, token by token (a graph's `messages` events)."""
        return [
            event.data[0]["content"]
            for event in self.events
            if event.event == "messages" and event.data[0].get("type") == "AIMessageChunk"
        ]

    def replies(self) -> list[str]:
        """Each chat model reply streamed so far, whole (its tokens joined), in order."""
        replies: dict[str, str] = {}
        for event in self.events:
            if event.event == "messages" and event.data[0].get("type") == "AIMessageChunk":
                chunk = event.data[0]
                replies[chunk["id"]] = replies.get(chunk["id"], "") + chunk["content"]
        return list(replies.values())

    def tool_calls(self) -> list[str]:
        """The names of the tools the chat model asked for, as streamed."""
        return [
            call["name"]
            for event in self.events
            if event.event == "messages" and event.data[0].get("type") == "AIMessageChunk"
            for call in event.data[0].get("tool_call_chunks") or []
            if call.get("name")
        ]

    def line(self) -> Text:
        if any(event.event == "messages" for event in self.events):
            ending = [e.data["status"] for e in self.events if e.event == "end"]
            text = " | ".join(self.replies()) + (f"  [end {ending[0]}]" if ending else "")
            return Text(f"tokens of graph run {self.run_id}: {text}")
        shown = []
        for event in self.events:
            if event.event == "step":
                shown.append(f"step {event.data['step']}/{event.data['of']}")
            elif event.event == "end":
                shown.append(f"end {event.data['status']}")
            else:
                shown.append(event.event)
        return Text(f"stream of run {self.run_id}: " + " > ".join(shown or ["waiting"]))

"""The demo's checks judged without services: the enqueue check from a journal file alone (an
earlier demo's lines in the same file are not this demo's, and a failure says what was seen:
issue 25, item 1), and the agent check on the example agent graph's own output, played in
process (issue 26, item 4)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace

from langgraph.checkpoint.memory import InMemorySaver

from runqueue.cli.demo_checks import DemoChecks
from runqueue.cli.demo_scenario import (
    AGENT_ANSWER,
    AGENT_CONTEXT,
    ENQUEUED_RUNS,
    Scenario,
    StreamTail,
    agent_run,
)
from runqueue.journal import record
from runqueue.langgraph.events import event_data, event_name, jsonable
from runqueue.records import RunStatus, StreamEvent
from workers.agent_graph import build_agent_graph


class Judge(DemoChecks):
    """The checks over a scenario whose every run ended in success (no database)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.manager = SimpleNamespace(get=lambda run_id: SimpleNamespace(status=RunStatus.success))


def played(journal_dir: Path, order: list[int], earlier_demo: bool) -> Scenario:
    """A scenario whose enqueued runs started in `order` (indexes into creation order), one
    at a time, with an earlier demo's four runs in the same journal file first if asked."""
    scenario = Scenario("abc123", journal_dir)
    journal = scenario.journal("enqueue")
    if earlier_demo:
        for _ in range(ENQUEUED_RUNS):
            run_id = str(uuid.uuid4())
            for event in ("start", "end"):
                record(journal.path, run_id=run_id, thread_id="demo-old-enqueue", event=event)
    created = [str(uuid.uuid4()) for _ in range(ENQUEUED_RUNS)]
    for index, run_id in enumerate(created):
        scenario.runs[f"enqueue.{index}"] = run_id
    for index in order:
        for event in ("start", "end"):
            thread_id = "demo-abc123-enqueue"
            record(journal.path, run_id=created[index], thread_id=thread_id, event=event)
    return scenario


def test_enqueue_check_ignores_an_earlier_demos_lines_in_the_journal(tmp_path):
    check = Judge(played(tmp_path, [0, 1, 2, 3], earlier_demo=True)).check_enqueue()
    assert check.passed, check.line()
    assert check.line() == (
        "PASS enqueue: fifo=True: 4 runs on one thread started in creation order, one at a "
        "time; statuses success, success, success, success"
    )


def test_enqueue_check_failure_says_the_order_it_saw(tmp_path):
    check = Judge(played(tmp_path, [1, 0, 2, 3], earlier_demo=True)).check_enqueue()
    assert not check.passed
    assert check.line().startswith(
        "FAIL enqueue: fifo=False: 4 runs on one thread started in the order #2, #1, #3, #4 "
        "(created #1..#4), one at a time"
    ), check.line()
    assert "in creation order" not in check.line()


def agent_played(journal_dir: Path) -> tuple[Scenario, StreamTail, SimpleNamespace]:
    """The demo's agent run played in process (no services): the example agent graph streams
    as the worker would stream it, journals as it runs, and ends with its values as the run's
    result."""
    scenario = Scenario("abc123", journal_dir)
    run_id, thread_id = str(uuid.uuid4()), scenario.thread("agent")
    scenario.runs["agent.run"] = run_id
    kwargs = agent_run(scenario.journal("agent"))
    config = {
        "configurable": {"thread_id": thread_id},
        "metadata": {"run_id": run_id, "thread_id": thread_id},
    }
    graph = build_agent_graph().copy(update={"checkpointer": InMemorySaver()})
    tail = StreamTail(SimpleNamespace(), run_id)

    async def play() -> dict:
        modes = [*kwargs["stream_mode"], "values"]
        async for namespace, mode, chunk in graph.astream(
            kwargs["input"], config, context=kwargs["context"], stream_mode=modes, subgraphs=True
        ):
            if mode in kwargs["stream_mode"]:
                name = event_name(mode, namespace)
                tail.events.append(
                    StreamEvent(str(len(tail.events) + 1), name, event_data(mode, chunk))
                )
            if mode == "values" and not namespace:
                values = chunk
        return jsonable(values)

    result = asyncio.run(play())
    tail.events.append(StreamEvent(None, "end", {"status": "success"}))
    run = SimpleNamespace(run_id=run_id, status=RunStatus.success, result=result)
    return scenario, tail, run


def judge_agent(scenario: Scenario, tail: StreamTail, run: SimpleNamespace) -> tuple[bool, str]:
    judge = Judge(scenario)
    judge.manager = SimpleNamespace(get=lambda run_id: run)
    judge.agent_tail = tail
    return judge.judge_agent()


def test_the_agent_check_passes_on_the_example_agents_own_output(tmp_path):
    scenario, tail, run = agent_played(tmp_path)
    passed, detail = judge_agent(scenario, tail, run)
    assert passed, detail
    assert detail == (
        f"agent run {run.run_id} (success) called get_timezone, get_weather as its model asked "
        "(get_timezone, get_weather), ran agent > agent > review:check > review:approve, "
        f"review approved, and streamed its answer: {AGENT_ANSWER!r}"
    )
    # The context reached the model: the answer addresses the context's user, in its tone.
    assert AGENT_ANSWER.startswith(f"Hello {AGENT_CONTEXT['user']}!")
    assert len([e for e in tail.events if e.event == "messages"]) > 20  # token by token


def test_the_agent_check_fails_when_a_tool_did_not_run(tmp_path):
    scenario, tail, run = agent_played(tmp_path)
    journal = scenario.journal("agent").path
    kept = [line for line in journal.read_text().splitlines() if "get_weather" not in line]
    journal.write_text("\n".join(kept) + "\n")
    passed, detail = judge_agent(scenario, tail, run)
    assert not passed
    assert f"agent run {run.run_id} (success) called get_timezone as its model asked" in detail

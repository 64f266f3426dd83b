"""The LangGraph run options (runqueue/langgraph/run_options.py), the four extra stream modes'
data (runqueue/langgraph/events.py), and how a request's body becomes a run's options
(runqueue/api/run_creation.py): checked here without services, the data against the
reference server's own code run on the same chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from runqueue.api.run_creation import run_kwargs
from runqueue.api.schemas import RunCreate
from runqueue.errors import InvalidPayloadError
from runqueue.langgraph.events import STREAM_MODES, event_data, events_data, stream_modes
from runqueue.langgraph.run_options import (
    RUN_OPTIONS,
    astream_arguments,
    check_run_options,
    filtered_context,
)
from tests.option_graphs import build
from tests.support import REPO_ROOT

# -- check_run_options ------------------------------------------------------------------------


def test_good_run_options_pass():
    check_run_options(
        {
            "context": {"user": "ada"},
            "interrupt_before": "*",
            "interrupt_after": ["greet", "finish"],
            "stream_subgraphs": True,
            "durability": "exit",
        }
    )
    check_run_options({})  # every option may be left out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context", ["user", "ada"]),
        ("context", "ada"),
        ("interrupt_before", "greet"),  # a node's name alone: "*" or a list
        ("interrupt_before", ["greet", 3]),
        ("interrupt_after", {"greet": True}),
        ("stream_subgraphs", "yes"),
        ("durability", "fast"),
        ("durability", True),
    ],
)
def test_a_bad_run_option_is_refused_naming_its_field(field: str, value: Any):
    with pytest.raises(InvalidPayloadError, match=field):
        check_run_options({field: value})


def test_the_run_options_are_the_graph_kwargs_besides_the_runs_own():
    assert RUN_OPTIONS == (
        "context",
        "interrupt_before",
        "interrupt_after",
        "stream_subgraphs",
        "durability",
        "checkpoint_id",
    )


# -- astream_arguments ------------------------------------------------------------------------


def test_astream_arguments_are_the_options_given_and_nothing_else():
    kwargs = {
        "input": {"steps": []},
        "stream_mode": ["values"],
        "context": {"user": "ada"},
        "interrupt_before": ["finish"],
        "stream_subgraphs": True,
        "durability": "async",
    }
    assert astream_arguments(kwargs) == {
        "context": {"user": "ada"},
        "interrupt_before": ["finish"],
        "durability": "async",
    }
    assert astream_arguments({"input": {}}) == {}


# -- filtered_context -------------------------------------------------------------------------


def test_the_context_keeps_only_what_the_graphs_context_schema_has():
    graph = build()
    assert filtered_context(graph, {"user": "ada", "extra": 1}) == {"user": "ada"}
    assert filtered_context(graph, None) is None
    assert filtered_context(graph, {}) == {}


def test_a_graph_without_a_context_schema_gets_the_context_whole():
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        n: int

    builder = StateGraph(State)
    builder.add_node("one", lambda state: {"n": 1})
    builder.add_edge(START, "one")
    graph = builder.compile()
    assert filtered_context(graph, {"anything": 1}) == {"anything": 1}


def test_the_filtered_context_reaches_a_dataclass_schema_that_the_whole_one_would_break():
    from langgraph.checkpoint.memory import InMemorySaver

    graph = build().copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(TypeError):  # what the filter spares a run
        graph.invoke({"steps": []}, config, context={"user": "ada", "extra": 1})
    context = filtered_context(graph, {"user": "ada", "extra": 1})
    values = graph.invoke({"steps": []}, {"configurable": {"thread_id": "u"}}, context=context)
    assert values["seen_context"] == {"user": "ada", "tone": "plain"}


# -- the four extra stream modes --------------------------------------------------------------


def test_every_reference_stream_mode_is_a_graph_stream_mode():
    assert {"debug", "tasks", "checkpoints", "events"} <= set(STREAM_MODES)
    assert stream_modes(["events", "debug", "tasks", "checkpoints"]) == [
        "events",
        "debug",
        "tasks",
        "checkpoints",
    ]


def _chunks() -> list[tuple[tuple[str, ...], str, Any]]:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = build().copy(update={"checkpointer": InMemorySaver()})
    modes = ["debug", "tasks", "checkpoints"]
    config = {"configurable": {"thread_id": "t"}}
    return list(graph.stream({"steps": []}, config, stream_mode=modes, subgraphs=True))


def test_a_debug_checkpoint_names_its_checkpoints_and_leaves_the_checkpoints_chunk_alone():
    chunks = _chunks()
    before = json.dumps([event_data("checkpoints", c) for _, m, c in chunks if m == "checkpoints"])
    debug = [event_data(m, c) for _, m, c in chunks if m == "debug"]
    after = json.dumps([event_data("checkpoints", c) for _, m, c in chunks if m == "checkpoints"])
    assert before == after  # the payload the two modes share is not changed in place
    checkpoints = [d["payload"] for d in debug if d["type"] == "checkpoint"]
    assert checkpoints and all(p["checkpoint"]["thread_id"] == "t" for p in checkpoints)
    assert checkpoints[0]["parent_checkpoint"] is None
    assert checkpoints[1]["parent_checkpoint"] == checkpoints[0]["checkpoint"]
    into_sub = [t for p in checkpoints for t in p["tasks"] if t["name"] == "sub"]
    assert into_sub[0]["checkpoint"]["checkpoint_ns"].startswith("sub:")
    assert "state" not in into_sub[0]
    assert {d["type"] for d in debug} == {"checkpoint", "task", "task_result"}


def test_an_event_the_reference_does_not_send_as_events_has_no_data():
    assert events_data({"event": "on_chain_stream", "parent_ids": [], "data": {}}) is None
    hidden = {"event": "on_chain_start", "tags": ["langsmith:hidden"], "parent_ids": ["p"]}
    assert events_data(hidden) is None
    node = {"event": "on_chain_stream", "parent_ids": ["p"], "data": {"chunk": {"n": 1}}}
    assert events_data(node) == node


def test_an_exception_in_a_tasks_result_is_its_name_and_message():
    data = event_data("tasks", {"id": "1", "name": "n", "error": ValueError("boom")})
    assert data["error"] == {"error": "ValueError", "message": "boom"}


# The reference server's own processing of the same chunks: its debug preprocessing, its JSON
# (langgraph_api.serde.json_dumpb), and what it sends as `events`. Run in a subprocess: the
# reference reads its settings from the environment when imported.
REFERENCE_SCRIPT = """
import asyncio, copy, json
from langgraph.checkpoint.memory import InMemorySaver
from langgraph_api.serde import json_dumpb
from langgraph_api.stream import _preprocess_debug_checkpoint
from runqueue.langgraph.events import event_data, events_data
from tests.option_graphs import build

graph = build().copy(update={"checkpointer": InMemorySaver()})
ours, theirs = [], []

async def main():
    config = {"configurable": {"thread_id": "t"}}
    modes = ["debug", "tasks", "checkpoints"]
    async for ns, mode, chunk in graph.astream(
        {"steps": []}, config, stream_mode=modes, subgraphs=True, context={"user": "ada"}
    ):
        ours.append([mode, event_data(mode, chunk)])
        reference = copy.deepcopy(chunk)
        if mode == "debug" and reference["type"] == "checkpoint":
            reference["payload"] = _preprocess_debug_checkpoint(reference["payload"])
        theirs.append([mode, json.loads(json_dumpb(reference))])
    config = {"configurable": {"thread_id": "e"}}
    async for event in graph.astream_events(
        {"steps": []}, config, version="v2", stream_mode=["values"], subgraphs=True
    ):
        data = events_data(event)
        if data is not None:
            ours.append(["events", data])
        sent = not (event.get("tags") and "langsmith:hidden" in event["tags"])
        if sent and not (event["event"] == "on_chain_stream" and not event["parent_ids"]):
            theirs.append(["events", json.loads(json_dumpb(event))])

asyncio.run(main())
print(json.dumps({"ours": json.loads(json.dumps(ours)), "theirs": theirs}))
"""


def test_debug_tasks_checkpoints_and_events_data_are_the_reference_servers():
    env = os.environ | {
        "LANGGRAPH_RUNTIME_EDITION": "inmem",
        "REDIS_URI": "redis://127.0.0.1:1",
        "DATABASE_URI": "postgres://unused@127.0.0.1:1/unused",
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", REFERENCE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sent = json.loads(done.stdout.strip().splitlines()[-1])
    modes = [mode for mode, _ in sent["theirs"]]
    assert {"debug", "tasks", "checkpoints", "events"} <= set(modes)
    assert len(sent["ours"]) == len(sent["theirs"])
    for ours, theirs in zip(sent["ours"], sent["theirs"], strict=True):
        assert ours == theirs


# -- a request's body as a run's options ------------------------------------------------------


@dataclass
class _Task:
    """What run_kwargs reads of an assistant's task."""

    name: str
    takes_run_fields: bool


GRAPH, CELERY = _Task("options", True), _Task("echo", False)


def _kwargs(task: _Task = GRAPH, **body: Any) -> dict[str, Any]:
    return run_kwargs(task, RunCreate(assistant_id=task.name, **body))  # type: ignore[arg-type]


def test_a_graph_run_carries_the_options_given():
    kwargs = _kwargs(
        input={"steps": []},
        interrupt_before=["finish"],
        interrupt_after="*",
        stream_subgraphs=True,
        stream_resumable=True,
        durability="exit",
        stream_mode=["events", "debug", "tasks", "checkpoints"],
    )
    assert kwargs == {
        "input": {"steps": []},
        "interrupt_before": ["finish"],
        "interrupt_after": "*",
        "stream_subgraphs": True,
        "durability": "exit",
        "stream_mode": ["events", "debug", "tasks", "checkpoints"],
    }
    assert _kwargs(stream_subgraphs=False, stream_resumable=False) == {}


@pytest.mark.parametrize(
    ("body", "durability"),
    [
        ({"checkpoint_during": False}, "exit"),
        ({"checkpoint_during": True}, "async"),
        ({"checkpoint_during": False, "durability": "sync"}, "sync"),
        ({"durability": "async"}, "async"),
        ({}, None),  # runqueue's default: sync
    ],
)
def test_checkpoint_during_is_mapped_to_durability_as_the_reference_maps_it(
    body: dict[str, Any], durability: str | None
):
    assert _kwargs(**body).get("durability") == durability


def test_context_and_configurable_are_mirrored_and_refused_together():
    kwargs = _kwargs(context={"user": "ada"}, config={"tags": ["t"]})
    assert kwargs["context"] == {"user": "ada"}
    assert kwargs["config"] == {"tags": ["t"], "configurable": {"user": "ada"}}
    kwargs = _kwargs(config={"configurable": {"user": "bob"}})
    assert kwargs["context"] == {"user": "bob"}  # without a context, the configurable is it
    assert kwargs["config"] == {"configurable": {"user": "bob"}}
    with pytest.raises(InvalidPayloadError, match="context, config.configurable"):
        _kwargs(context={"user": "ada"}, config={"configurable": {"user": "bob"}})


def test_a_celery_assistant_refuses_the_graph_options_naming_them():
    with pytest.raises(InvalidPayloadError) as refused:
        _kwargs(
            CELERY,
            context={"a": 1},
            interrupt_before=["x"],
            stream_subgraphs=True,
            durability="exit",
            checkpoint_during=False,
        )
    message = str(refused.value)
    for field in ("context", "interrupt_before", "stream_subgraphs", "durability"):
        assert field in message
    assert "checkpoint_during" in message and "Celery task" in message
    # What every run does anyway, and what the SDK sends by default, is accepted.
    assert _kwargs(CELERY, input={"a": 1}, durability="sync", stream_resumable=True) == {"a": 1}


def test_what_is_still_refused_names_itself():
    with pytest.raises(InvalidPayloadError, match="feedback_keys"):
        _kwargs(feedback_keys=["score"])
    # webhook and after_seconds are served: they are run options, not the assistant's kwargs.
    assert _kwargs(CELERY, input={"a": 1}, webhook="http://example.invalid/hook") == {"a": 1}
    assert _kwargs(CELERY, input={"a": 1}, after_seconds=5) == {"a": 1}

"""Differential conformance of a thread's history and time travel: one langgraph-sdk script
runs against the LangGraph reference server and against runqueue (the harness and the
server pair of test_api_conformance.py, one pair for this file). History order and parent
links, the state at a checkpoint, update_state's status code and shape, an update on an
interrupted thread then its resume: equal item by item, except HISTORY_DIFFERENCES."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Servers,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module fixture: the reference and runqueue, side by side
    start_busy_run,
    transcripts,
    without_ids,
)

pytestmark = pytest.mark.integration

UNKNOWN_CHECKPOINT = "1f000000-0000-6000-8000-000000000000"
HISTORY_DIFFERENCES: dict[str, Known] = {
    "history.get.default_limit": Known(
        1,
        5,
        "GET /threads/{id}/history without a limit: the reference answers 1 checkpoint (its "
        "OpenAPI says 10); runqueue answers 10 at most, as documented and as the SDK asks",
    ),
    "history.post.default_limit": Known(
        1,
        5,
        "POST /threads/{id}/history without a limit: the reference answers 1 checkpoint (its "
        "body schema's default); runqueue 10 at most, as GET, and as langgraph-sdk asks",
    ),
    "history.before.id": Known(
        (422, True),
        (200, False),
        "POST /threads/{id}/history takes `before` as a checkpoint id too (langgraph-sdk's "
        "get_history(before=str) sends one); the reference takes a config only "
        '({"configurable": {"checkpoint_id"}}, as the JS client sends it)',
    ),
    "state_at.unknown": Known(
        (200, False),
        (404, True),
        "a checkpoint the thread does not have is not found, not an empty state",
    ),
    "update.bad_node": Known(
        (400, True), (422, True), "runqueue's refusals of a body are 422 (docs/api.md)"
    ),
}


def ids(states: list[dict[str, Any]]) -> list[str]:
    return [state["checkpoint"]["checkpoint_id"] for state in states]


def linear(states: list[dict[str, Any]]) -> bool:
    """Each checkpoint's parent is the entry after it (newest first); the oldest has none."""
    parents = [(state["parent_checkpoint"] or {}).get("checkpoint_id") for state in states]
    return parents == [*ids(states)[1:], None]


def steps(states: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a history shows, as compared: source, step, next, values (ids are random)."""
    return [
        (s["metadata"]["source"], s["metadata"]["step"], s["next"], s["values"]) for s in states
    ]


def shape(state: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(state), sorted(state["checkpoint"] or {})


async def history(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    thread_id = (await client.threads.create())["thread_id"]
    t.note("history.fresh", await client.threads.get_history(thread_id))
    await client.runs.wait(thread_id, GRAPH, input={})
    states = await client.threads.get_history(thread_id)
    t.note("history", steps(states))
    t.note("history.linear", linear(states))
    t.note("history.shape", shape(states[0]))
    t.note("history.tasks", [[task["name"] for task in s["tasks"]] for s in states])
    middle = ids(states)[2]
    response = await raw.get(f"/threads/{thread_id}/history")
    t.note("history.get.default_limit", len(response.json()))
    response = await raw.get(f"/threads/{thread_id}/history", params={"limit": 2, "before": middle})
    t.note("history.get.before", steps(response.json()))
    before = {"configurable": {"checkpoint_id": middle}}  # as the JS client sends it
    response = await raw.post(f"/threads/{thread_id}/history", json={"before": before, "limit": 5})
    t.note("history.before.config", steps(response.json()))
    response = await raw.post(f"/threads/{thread_id}/history", json={})
    t.note("history.post.default_limit", len(response.json()))
    response = await raw.post(f"/threads/{thread_id}/history", json={"before": middle})
    t.note("history.before.id", error_shape(response))
    found = await client.threads.get_history(thread_id, metadata={"source": "input"})
    t.note("history.metadata", steps(found))
    found = await client.threads.get_history(thread_id, checkpoint={"checkpoint_id": middle})
    t.note("history.checkpoint", ids(found) == [middle])

    for how, state in (
        ("get", await client.threads.get_state(thread_id, checkpoint_id=middle)),
        ("post", await client.threads.get_state(thread_id, checkpoint={"checkpoint_id": middle})),
    ):
        t.note(f"state_at.{how}", steps([state]))
        t.note(f"state_at.{how}.checkpoint", state["checkpoint"]["checkpoint_id"] == middle)
        t.note(f"state_at.{how}.parent", state["parent_checkpoint"] == states[3]["checkpoint"])
    response = await raw.get(f"/threads/{thread_id}/state/{UNKNOWN_CHECKPOINT}")
    t.note("state_at.unknown", error_shape(response))
    latest = await client.threads.get_state(thread_id, subgraphs=True)
    t.note("state.latest", (shape(latest), latest["parent_checkpoint"] == states[1]["checkpoint"]))


async def updates(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    fresh = (await client.threads.create())["thread_id"]
    response = await raw.post(f"/threads/{fresh}/state", json={"values": {"steps": ["x"]}})
    t.note("update.no_graph", error_shape(response))

    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, GRAPH, input={})
    head = (await client.threads.get_history(thread_id, limit=1))[0]
    response = await raw.post(f"/threads/{thread_id}/state", json={"values": {"steps": ["x"]}})
    body = response.json()
    t.note("update.code", response.status_code)
    t.note("update.shape", (sorted(body), sorted(body["checkpoint"])))
    after = await client.threads.get_history(thread_id, limit=2)
    t.note("update.history", steps(after))
    t.note("update.written", ids(after)[0] == body["checkpoint"]["checkpoint_id"])
    t.note("update.parent", after[0]["parent_checkpoint"] == head["checkpoint"])
    written = await client.threads.update_state(thread_id, {"steps": ["y"]}, as_node="work")
    t.note("update.as_node", steps([await client.threads.get_state(thread_id)]))
    t.note("update.sdk", sorted(written))
    response = await raw.post(
        f"/threads/{thread_id}/state", json={"values": {"steps": ["z"]}, "as_node": "nowhere"}
    )
    t.note("update.bad_node", error_shape(response))
    t.note("update.history.linear", linear(await client.threads.get_history(thread_id)))

    busy, run_id = await start_busy_run(client)
    response = await raw.post(f"/threads/{busy}/state", json={"values": {"steps": ["x"]}})
    t.note("update.busy", error_shape(response))
    await client.runs.cancel(busy, run_id)  # no need to wait the run out


async def interrupted(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, GRAPH, input={"ask": True})
    before = await client.threads.get_state(thread_id)
    t.note("interrupted.before", (before["next"], without_ids(before["interrupts"])))
    response = await client.http.client.post(
        f"/threads/{thread_id}/state", json={"values": {"steps": ["human"]}}
    )
    t.note("interrupted.update", response.status_code)
    state = await client.threads.get_state(thread_id)
    t.note("interrupted.state", (steps([state]), without_ids(state["interrupts"])))
    thread = await client.threads.get(thread_id)
    t.note("interrupted.thread", (thread["status"], thread["values"]))
    resumed = await client.runs.wait(thread_id, GRAPH, command={"resume": "yes"})
    t.note("interrupted.resume", resumed)
    states = await client.threads.get_history(thread_id)
    t.note("interrupted.history", steps(states))
    t.note("interrupted.history.linear", linear(states))


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    parts = [Transcript() for _ in range(3)]
    scenarios = (history, updates, interrupted)
    await asyncio.gather(*(s(client, p) for s, p in zip(scenarios, parts, strict=True)))
    return [item for part in parts for item in part.items]


def test_history_and_time_travel_as_the_reference_server(servers: Servers) -> None:  # noqa: F811
    reference, runqueue = transcripts(servers, transcript)
    assert_conformant(reference, runqueue, HISTORY_DIFFERENCES)
    # The scenarios observed what they meant to: these hold on both servers.
    observed = dict(runqueue)
    assert observed["history.linear"] and observed["interrupted.history.linear"]
    assert observed["update.code"] == 200 and observed["update.busy"] == (409, True)
    assert observed["interrupted.resume"]["steps"] == ["work", "human", "review", "respond"]

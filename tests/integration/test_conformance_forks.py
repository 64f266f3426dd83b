"""Differential conformance of forks, `stream_resumable` and the thread stream: one
langgraph-sdk script against `langgraph dev` and against runqueue (the harness and its
`servers` fixture are tests/integration/test_api_conformance.py's; one server pair for this
file). The transcripts must match item by item, except for KNOWN_DIFFERENCES, each of which
must still occur."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Servers,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module fixture: the reference and runqueue, side by side
    transcripts,
)

pytestmark = pytest.mark.integration

STREAM_SECONDS = 30  # the longest a thread stream is read for what a scenario waits for

KNOWN_DIFFERENCES: dict[str, Known] = {
    "fork.unknown_checkpoint": Known(
        (200, False),
        (404, True),
        "a fork from a checkpoint the thread does not have is refused (404) before anything is "
        "written; the reference runs it from an empty state, as if the thread had none",
    ),
    "thread_stream.resumed.exact": Known(
        False,
        True,
        "a thread stream resumed with Last-Event-ID replays every event after it; the "
        "reference's replay leaves out a failed run's `error` event (sent live only)",
    ),
}


def turn(said: str) -> list[str]:
    return [said, "work", "review", "respond"]


async def forks(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    parts = [
        part
        async for part in client.runs.stream(
            thread_id, GRAPH, input={"steps": ["hi"]}, stream_mode="checkpoints"
        )
    ]
    before_review = next(p.data for p in parts if (p.data or {}).get("next") == ["review"])
    first_head = (await client.threads.get_state(thread_id))["checkpoint"]
    await client.runs.wait(thread_id, GRAPH, input={"steps": ["second"]})

    # The chat UI's edit: the edited turn from the checkpoint the original went on.
    point = {k: v for k, v in first_head.items() if k != "thread_id"}
    parts = [
        part
        async for part in client.runs.stream(
            thread_id,
            GRAPH,
            input={"steps": ["edited"]},
            checkpoint=point,
            stream_mode=["values", "checkpoints"],
        )
    ]
    written = [p.data for p in parts if p.event == "checkpoints"]
    parent = written[0]["parent_config"]["configurable"]["checkpoint_id"]
    t.note("fork.edit.parent_is_the_fork_point", parent == first_head["checkpoint_id"])
    state = await client.threads.get_state(thread_id)
    t.note("fork.edit.state", state["values"])
    t.note("fork.edit.thread", (await client.threads.get(thread_id))["values"])

    mid = before_review["config"]["configurable"]["checkpoint_id"]
    run = await client.runs.create(thread_id, GRAPH, input=None, checkpoint_id=mid)
    t.note("fork.mid_run.join", await client.runs.join(thread_id, run["run_id"]))
    t.note("fork.mid_run.state", (await client.threads.get_state(thread_id))["values"])

    config = {"configurable": {"checkpoint_id": first_head["checkpoint_id"]}}
    waited = await client.runs.wait(thread_id, GRAPH, input={"steps": ["third"]}, config=config)
    t.note("fork.configurable.wait", waited)

    raw = client.http.client
    runs = f"/threads/{thread_id}/runs/wait"
    for name, fields in (
        ("unknown_checkpoint", {"checkpoint_id": str(uuid.uuid4())}),
        ("malformed_checkpoint_id", {"checkpoint_id": "nope"}),
    ):
        body = {"assistant_id": GRAPH, "input": {}, **fields}
        t.note(f"fork.{name}", error_shape(await raw.post(runs, json=body)))


async def resumable(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    parts = [
        part
        async for part in client.runs.stream(
            thread_id, GRAPH, input={}, stream_mode=["values", "updates"], stream_resumable=True
        )
        if part.event not in ("heartbeat", "end")
    ]
    t.note("stream_resumable.events", [part.event for part in parts])
    t.note("stream_resumable.ids", all(part.id for part in parts))


def shape(part: StreamPart) -> tuple[str, Any]:
    """A thread stream's part as compared: its event, and for `metadata` what it says (a run's
    attempt, or its end); other data depends on the run."""
    if part.event != "metadata":
        return part.event, None
    return part.event, ("attempt" in part.data, part.data.get("status"))


async def read_until_done(
    client: LangGraphClient, thread_id: str, run_ids: list[str], **kwargs: Any
) -> list[StreamPart]:
    """The thread stream's parts until each of `run_ids` has its `run_done` (the list may be
    filled while the stream is read: it is read until it holds three)."""
    parts: list[StreamPart] = []
    done: set[str] = set()
    async with asyncio.timeout(STREAM_SECONDS):
        async for part in await client.threads.join_stream(thread_id, **kwargs):
            if part.event == "heartbeat":
                continue
            parts.append(part)
            if part.event == "metadata" and part.data.get("status") == "run_done":
                done.add(part.data["run_id"])
            if len(run_ids) == 3 and set(run_ids) <= done:
                return parts
    raise AssertionError(f"the thread stream closed: {parts}")


def run_done(run_id: str) -> dict[str, str]:
    return {"status": "run_done", "run_id": run_id}


async def thread_stream(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    run_ids: list[str] = []
    reading = asyncio.create_task(read_until_done(client, thread_id, run_ids))
    # The reference streams only what runs once it has joined: a first run keeps the thread
    # busy for a second, so the two compared start behind it, seen on both servers.
    for fields in (
        {"input": {"seconds": 1}},
        {"input": {}, "stream_mode": ["values", "updates"]},
        {"input": {"fail": True}},
    ):
        run = await client.runs.create(thread_id, GRAPH, stream_resumable=True, **fields)
        run_ids.append(run["run_id"])
    parts = await reading
    first_done = next(i for i, p in enumerate(parts) if p.data == run_done(run_ids[0]))
    compared = parts[first_done + 1 :]
    t.note("thread_stream.events", [shape(part) for part in compared])
    t.note("thread_stream.ids", all(part.id for part in compared))
    t.note("thread_stream.errors", [p.data for p in compared if p.event == "error"])

    # From the second event of the second run: the rest of it, then the third run's.
    resumed = await read_until_done(
        client, thread_id, [run_ids[1], run_ids[2], run_ids[2]], last_event_id=compared[1].id
    )
    shapes = [shape(part) for part in resumed if part.event != "error"]
    t.note(
        "thread_stream.resumed", shapes == [shape(p) for p in compared[2:] if p.event != "error"]
    )
    exact = [(p.event, p.data) for p in resumed] == [(p.event, p.data) for p in compared[2:]]
    t.note("thread_stream.resumed.exact", exact)


SCENARIOS = [forks, resumable, thread_stream]


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    parts = [Transcript() for _ in SCENARIOS]
    await asyncio.gather(*(s(client, p) for s, p in zip(SCENARIOS, parts, strict=True)))
    return [item for part in parts for item in part.items]


def test_forks_and_the_thread_stream_answer_as_the_reference_does(servers: Servers) -> None:  # noqa: F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)

"""Differential conformance of delayed runs (`after_seconds`): one langgraph-sdk script
against `langgraph dev` and against runqueue (the harness and its `servers` fixture are
tests/integration/test_api_conformance.py's; one server pair for this file). Status codes,
shapes, when a delayed run starts, wait and stream, and the strategies on a thread with a
delayed run must match, except for KNOWN_DIFFERENCES, each of which must still occur."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module fixture: the reference and runqueue, side by side
    settle,
    transcripts,
)

pytestmark = pytest.mark.integration

DELAY = 1.5  # seconds

KNOWN_DIFFERENCES: dict[str, Known] = {
    "delayed.enqueue.order": Known(
        ["newer", "delayed"],
        ["delayed", "newer"],
        "an enqueued run waits behind a delayed run created before it (FIFO per thread, in "
        "creation order); the reference starts runs in created_at order, and a delayed run's "
        "created_at is its due time, so a run due earlier passes it",
    ),
}


def due_after(run: dict[str, Any], asked_at: float) -> float:
    """How long after the request was sent the run's created_at is."""
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    return created.astimezone(UTC).timestamp() - asked_at


async def delayed_create(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    asked_at = time.time()
    run = await client.runs.create(thread_id, GRAPH, input={"steps": ["x"]}, after_seconds=DELAY)
    answered_in = time.time() - asked_at
    t.note("delayed.create.status", run["status"])
    # created_at is the due time: the delay after the run was written, during the request.
    due_in = due_after(run, asked_at)
    t.note("delayed.create.created_at_is_due", DELAY - 0.01 <= due_in <= DELAY + answered_in)
    await asyncio.sleep(DELAY / 3)
    t.note("delayed.before_due.status", (await client.runs.get(thread_id, run["run_id"]))["status"])
    t.note("delayed.thread_status", (await client.threads.get(thread_id))["status"])
    t.note("delayed.final", await settle(client, thread_id, run["run_id"]))
    t.note("delayed.state", (await client.threads.get_state(thread_id))["values"]["steps"])


async def delayed_wait_and_stream(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    began = time.monotonic()
    values = await client.runs.wait(thread_id, GRAPH, input={"steps": ["w"]}, after_seconds=DELAY)
    t.note("delayed.wait.values", values["steps"])
    t.note("delayed.wait.waited_for_due", time.monotonic() - began >= DELAY - 0.05)
    began = time.monotonic()
    values = await client.runs.wait(None, GRAPH, input={"steps": ["s"]}, after_seconds=DELAY)
    t.note("delayed.wait.stateless.values", values["steps"])
    t.note("delayed.wait.stateless.waited_for_due", time.monotonic() - began >= DELAY - 0.05)
    began = time.monotonic()
    parts = [
        part
        async for part in client.runs.stream(
            thread_id, GRAPH, input={"steps": ["st"]}, after_seconds=DELAY, stream_mode="updates"
        )
        if part.event not in ("heartbeat", "end")
    ]
    t.note("delayed.stream.events", [part.event for part in parts])
    t.note("delayed.stream.waited_for_due", time.monotonic() - began >= DELAY - 0.05)


async def delayed_refusals(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    refused = [("text", "soon"), ("object", {"s": 1}), ("list", [1]), ("null", None)]
    refused.append(("bool", True))
    for name, value in refused:
        response = await client.http.client.post(
            f"/threads/{thread_id}/runs",
            json={"assistant_id": GRAPH, "input": {"steps": ["r"]}, "after_seconds": value},
        )
        t.note(f"delayed.refused.{name}", error_shape(response))
    for name, value in (("zero", 0), ("negative", -5), ("fraction", 0.2)):
        response = await client.http.client.post(
            f"/threads/{thread_id}/runs/wait",
            json={"assistant_id": GRAPH, "input": {"steps": [name]}, "after_seconds": value},
        )
        t.note(f"delayed.accepted.{name}", response.status_code)


async def delayed_strategies(client: LangGraphClient, t: Transcript) -> None:
    # reject: a delayed run is in flight; cancel before due: interrupted, never run.
    thread_id = (await client.threads.create())["thread_id"]
    delayed = await client.runs.create(
        thread_id, GRAPH, input={"steps": ["never"]}, after_seconds=30
    )
    response = await client.http.client.post(
        f"/threads/{thread_id}/runs",
        json={"assistant_id": GRAPH, "input": {"steps": ["r"]}, "multitask_strategy": "reject"},
    )
    t.note("delayed.reject", error_shape(response))
    await client.runs.cancel(thread_id, delayed["run_id"])
    t.note("delayed.cancelled", await settle(client, thread_id, delayed["run_id"]))
    t.note("delayed.cancelled.state", (await client.threads.get_state(thread_id))["values"])

    # interrupt: the delayed run is cancelled, the new one runs.
    thread_id = (await client.threads.create())["thread_id"]
    delayed = await client.runs.create(
        thread_id, GRAPH, input={"steps": ["never"]}, after_seconds=DELAY
    )
    newer = await client.runs.create(
        thread_id, GRAPH, input={"steps": ["now"]}, multitask_strategy="interrupt"
    )
    t.note("delayed.interrupt.newer", await settle(client, thread_id, newer["run_id"]))
    await asyncio.sleep(DELAY)
    t.note("delayed.interrupt.delayed", await settle(client, thread_id, delayed["run_id"]))
    t.note("delayed.interrupt.state", (await client.threads.get_state(thread_id))["values"])

    # enqueue behind a delayed run: both run; in which order is a known difference.
    thread_id = (await client.threads.create())["thread_id"]
    delayed = await client.runs.create(
        thread_id, GRAPH, input={"steps": ["delayed"]}, after_seconds=DELAY
    )
    newer = await client.runs.create(
        thread_id, GRAPH, input={"steps": ["newer"]}, multitask_strategy="enqueue"
    )
    finals = [await settle(client, thread_id, run["run_id"]) for run in (delayed, newer)]
    t.note("delayed.enqueue.finals", finals)
    steps = (await client.threads.get_state(thread_id))["values"]["steps"]
    t.note("delayed.enqueue.order", [step for step in steps if step in ("delayed", "newer")])


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    scenarios = [delayed_create, delayed_wait_and_stream, delayed_refusals, delayed_strategies]
    parts = [Transcript() for _ in scenarios]
    await asyncio.gather(*(s(client, p) for s, p in zip(scenarios, parts, strict=True)))
    return [item for part in parts for item in part.items]


def test_delayed_runs_answer_as_the_reference_server_does(servers) -> None:  # noqa: F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)

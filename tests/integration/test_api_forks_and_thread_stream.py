"""Forks (a run from an earlier checkpoint of its thread) and the thread stream (GET
/threads/{id}/stream), through the HTTP API: langgraph-sdk and raw SSE against a real
`runqueue serve` and a real prefork worker on PostgreSQL + Redis, running the `agent` graph
of tests/api_graphs.py. The graph's values come from its checkpoints in the database: what a
fork did is what the thread's state shows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from tests.api_support import ServerProcess, table_counts

pytestmark = pytest.mark.integration

GRAPH = "agent"  # tests/api_graphs.py
CELERY = "echo"  # workers/assistants.py: a plain Celery assistant
NODES = ["work", "review", "respond"]


def turn(said: str) -> list[str]:
    """The steps one turn adds: what was said, then every node's name."""
    return [said, *NODES]


def sdk_of(server: ServerProcess, key: str):  # noqa: ANN201
    return get_sync_client(url=server.url, api_key=key)


def post(server: ServerProcess, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers={"x-api-key": key}, timeout=60)


def wait_until_running(sdk, thread_id: str, run_id: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while sdk.runs.get(thread_id, run_id)["status"] != "running":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)


# -- forks -------------------------------------------------------------------------------------


def test_a_fork_branches_from_the_checkpoint_given_and_the_head_follows_it(server, keys):  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    parts = list(sdk.runs.stream(tid, GRAPH, input={"steps": ["hi"]}, stream_mode="checkpoints"))
    before_review = next(p.data for p in parts if p.data.get("next") == ["review"])
    first_head = sdk.threads.get_state(tid)["checkpoint"]
    assert sdk.runs.wait(tid, GRAPH, input={"steps": ["second"]})["steps"] == [
        *turn("hi"),
        *turn("second"),
    ]

    # The chat UI's "edit message": the edited turn from the checkpoint its input went on,
    # as useStream sends it (the state's checkpoint object, thread_id removed), streamed.
    fork_point = {k: v for k, v in first_head.items() if k != "thread_id"}
    parts = list(
        sdk.runs.stream(
            tid,
            GRAPH,
            input={"steps": ["second, edited"]},
            checkpoint=fork_point,
            stream_mode=["values", "checkpoints"],
            stream_resumable=True,
        )
    )
    written = [p.data for p in parts if p.event == "checkpoints"]
    parent = written[0]["parent_config"]["configurable"]["checkpoint_id"]
    assert parent == first_head["checkpoint_id"]  # the new branch starts at the fork point
    edited = [*turn("hi"), *turn("second, edited")]
    assert [p.data for p in parts if p.event == "values"][-1]["steps"] == edited
    state = sdk.threads.get_state(tid)
    assert state["values"]["steps"] == edited  # the head follows the new branch
    assert (
        state["checkpoint"]["checkpoint_id"]
        == written[-1]["config"]["configurable"]["checkpoint_id"]
    )
    assert sdk.threads.get(tid)["values"]["steps"] == edited

    # From the middle of the first turn, in the background: review and respond run again.
    mid = before_review["config"]["configurable"]["checkpoint_id"]
    run = sdk.runs.create(tid, GRAPH, input=None, checkpoint_id=mid)
    assert run["kwargs"]["checkpoint_id"] == mid
    assert sdk.runs.join(tid, run["run_id"])["steps"] == turn("hi")
    assert sdk.threads.get_state(tid)["values"]["steps"] == turn("hi")

    # config.configurable.checkpoint_id is a fork too, as the reference takes it.
    config = {"configurable": {"checkpoint_id": first_head["checkpoint_id"], "checkpoint_ns": ""}}
    values = sdk.runs.wait(tid, GRAPH, input={"steps": ["third"]}, config=config)
    assert values["steps"] == [*turn("hi"), *turn("third")]


def test_a_fork_from_no_checkpoint_of_the_thread_is_refused_with_nothing_written(
    server,  # noqa: ANN001
    keys,  # noqa: ANN001
    api_backend,  # noqa: ANN001
):
    alice = keys["alice"]
    sdk = sdk_of(server, alice)
    tid = sdk.threads.create()["thread_id"]
    sdk.runs.wait(tid, GRAPH, input={})
    head = sdk.threads.get_state(tid)["checkpoint"]["checkpoint_id"]
    unknown = str(uuid.uuid4())
    runs = f"/threads/{tid}/runs"
    before = table_counts(api_backend)
    refusals: list[tuple[str, str, dict[str, Any], int, str]] = [
        (alice, f"{runs}/wait", {"checkpoint_id": unknown}, 404, f"checkpoint {unknown} not"),
        (alice, runs, {"checkpoint": {"checkpoint_id": unknown}}, 404, "not found in thread"),
        (alice, f"{runs}/stream", {"checkpoint_id": unknown}, 404, "not found in thread"),
        (alice, runs, {"checkpoint_id": "nope"}, 422, "checkpoint_id 'nope' is not a checkpoint"),
        (
            alice,
            runs,
            {"checkpoint": {"checkpoint_id": head, "checkpoint_ns": "sub:1"}},
            422,
            "checkpoint.checkpoint_ns 'sub:1'",
        ),
        (
            alice,
            runs,
            {"checkpoint": {"checkpoint_id": head, "thread_id": "another"}},
            422,
            "checkpoint.thread_id is 'another'",
        ),
        (
            alice,
            runs,
            {"checkpoint": {"checkpoint_id": head}, "checkpoint_id": unknown},
            422,
            "two different checkpoints",
        ),
        (alice, "/runs/wait", {"checkpoint_id": head}, 404, "a stateless run starts a new"),
        (keys["bob"], runs, {"checkpoint_id": head}, 404, f"thread {tid} not found"),
    ]
    for key, path, fields, status, detail in refusals:
        response = post(server, key, path, {"assistant_id": GRAPH, "input": {}, **fields})
        assert response.status_code == status, (fields, response.text)
        assert detail in response.json()["detail"], (fields, response.text)
    response = post(server, alice, runs, {"assistant_id": CELERY, "checkpoint_id": head})
    assert response.status_code == 422
    assert "checkpoint_id: assistant 'echo' is a Celery task" in response.json()["detail"]
    assert table_counts(api_backend) == before
    assert sdk.threads.get_state(tid)["checkpoint"]["checkpoint_id"] == head


def test_a_fork_while_a_run_is_in_flight_follows_the_threads_strategy(server, keys):  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    sdk.runs.wait(tid, GRAPH, input={"steps": ["hi"]})
    head = sdk.threads.get_state(tid)["checkpoint"]
    busy = sdk.runs.create(tid, GRAPH, input={"seconds": 1.5})
    wait_until_running(sdk, tid, busy["run_id"])

    fork = {"assistant_id": GRAPH, "input": {"steps": ["forked"]}, "checkpoint": head}
    refused = post(
        server, keys["alice"], f"/threads/{tid}/runs", fork | {"multitask_strategy": "reject"}
    )
    assert refused.status_code == 409, refused.text
    assert len(sdk.runs.list(tid)) == 2  # the first turn and the busy run: no third

    queued = sdk.runs.create(tid, GRAPH, input={"steps": ["forked"]}, checkpoint=head)
    assert queued["status"] == "pending"
    values = sdk.runs.join(tid, queued["run_id"])
    assert sdk.runs.get(tid, busy["run_id"])["status"] == "success"
    # The fork ran after the busy run and branched from before it: its state has no `seconds`,
    # and it is the thread's head (its checkpoints are newer than the busy run's).
    assert values["steps"] == [*turn("hi"), *turn("forked")] and "seconds" not in values
    assert sdk.threads.get_state(tid)["values"] == values


def test_a_fork_whose_checkpoint_was_rolled_back_before_it_ran_fails_saying_so(server, keys):  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    first = sdk.runs.wait(tid, GRAPH, input={"steps": ["hi"]})
    busy = sdk.runs.create(tid, GRAPH, input={"seconds": 1.5})
    deadline = time.monotonic() + 30
    while "seconds" not in (sdk.threads.get_state(tid)["values"] or {}):  # its input is written
        assert time.monotonic() < deadline, "the busy run never wrote its input"
        time.sleep(0.05)
    busy_checkpoint = sdk.threads.get_state(tid)["checkpoint"]["checkpoint_id"]
    fork = sdk.runs.create(tid, GRAPH, input=None, checkpoint_id=busy_checkpoint)  # accepted
    cancel = f"/threads/{tid}/runs/{busy['run_id']}/cancel?wait=1&action=rollback"
    assert post(server, keys["alice"], cancel, {}).status_code == 200
    # The rollback deleted the checkpoint the fork was to start from: the fork fails, it does
    # not run from an empty state.
    joined = sdk.runs.join(tid, fork["run_id"])
    assert joined["__error__"]["error"] == "CheckpointNotFoundError", joined
    assert busy_checkpoint in joined["__error__"]["message"]
    assert sdk.threads.get_state(tid)["values"] == first


# -- the thread stream -------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    event: str
    data: Any
    id: str | None


async def read_thread_stream(
    server: ServerProcess,
    key: str,
    thread_id: str,
    until: Callable[[list[Frame]], bool],
    *,
    last_event_id: str | None = None,
    params: dict[str, str] | None = None,
    opened: asyncio.Event | None = None,
) -> list[Frame]:
    """The thread stream's frames (pings left out) until `until` says enough; then closed."""
    import json

    headers = {"x-api-key": key} | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    frames: list[Frame] = []
    fields: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        path = f"/threads/{thread_id}/stream"
        async with client.stream("GET", path, headers=headers, params=params) as response:
            assert response.status_code == 200, await response.aread()
            assert "location" not in response.headers  # nothing for an SDK to reconnect to
            if opened is not None:
                opened.set()
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    if name in ("event", "data", "id"):
                        fields[name] = value
                    continue
                if "event" in fields:
                    data = json.loads(fields["data"])
                    frames.append(Frame(fields["event"], data, fields.get("id")))
                    if until(frames):
                        return frames
                fields = {}
    raise AssertionError(f"the thread stream closed: {frames}")


def run_of(frame: Frame) -> str:
    """The run a thread stream's frame belongs to, from its id (`<run_id>:<n>`)."""
    assert frame.id is not None, frame
    return frame.id.split(":")[0]


def ended(*run_ids: str) -> Callable[[list[Frame]], bool]:
    """Enough once every one of these runs' `run_done` has come."""

    def done(frames: list[Frame]) -> bool:
        finished = {f.data["run_id"] for f in frames if f.data.get("status") == "run_done"}
        return set(run_ids) <= finished

    return done


def run_stream(server: ServerProcess, key: str, thread_id: str, run_id: str) -> list[Frame]:
    """A finished run's own stream, replayed: its frames between the API's `metadata` and `end`."""
    frames = []
    with sdk_of(server, key) as sdk:
        for part in sdk.runs.join_stream(thread_id, run_id):
            frames.append(Frame(part.event, part.data, part.id))
    assert frames[0].id == "0" and frames[-1].event == "end"
    return frames[1:-1]


def test_the_thread_stream_follows_its_runs_and_resumes_exactly(server, keys):  # noqa: ANN001
    asyncio.run(follow_and_resume(server, keys["alice"]))


async def follow_and_resume(server: ServerProcess, key: str) -> None:
    sdk = sdk_of(server, key)
    tid = sdk.threads.create()["thread_id"]
    earlier = sdk.runs.create(tid, GRAPH, input={})["run_id"]  # ends before anyone joins
    sdk.runs.join(tid, earlier)
    opened = asyncio.Event()
    first_id: list[str] = []

    def until_both(frames: list[Frame]) -> bool:
        return len(first_id) == 2 and ended(*first_id)(frames)

    reading = asyncio.create_task(read_thread_stream(server, key, tid, until_both, opened=opened))
    await asyncio.wait_for(opened.wait(), 10)
    create = sdk.runs.create
    first = await asyncio.to_thread(
        create, tid, GRAPH, input={"seconds": 0.5}, stream_mode=["values", "updates"]
    )
    second = await asyncio.to_thread(create, tid, GRAPH, input={"steps": ["two"]})  # after it
    first_id += [first["run_id"], second["run_id"]]
    whole = await asyncio.wait_for(reading, 60)

    assert earlier and all(run_of(f) != earlier for f in whole)
    by_run = [run_of(f) for f in whole]
    assert by_run == sorted(by_run, key=first_id.index)  # the first run's, then the second's
    assert len({f.id for f in whole}) == len(whole)
    for run_id in first_id:
        own = [f for f in whole if run_of(f) == run_id]
        assert own[-1] == Frame(
            "metadata", {"status": "run_done", "run_id": run_id}, f"{run_id}:done"
        )
        replayed = run_stream(server, key, tid, run_id)
        # The run's own stream has it all but the attempt's `metadata`, which its SSE leaves out.
        assert own[0] == Frame("metadata", own[0].data, f"{run_id}:1")
        assert own[0].data["attempt"] == 1
        assert own[1:-1] == [Frame(f.event, f.data, f"{run_id}:{f.id}") for f in replayed]
    assert {f.event for f in whole} == {"metadata", "values", "updates"}

    # Reconnects: from the middle of the first run, and from its end.
    resumed = await read_thread_stream(
        server, key, tid, ended(*first_id), last_event_id=whole[2].id
    )
    assert resumed == whole[3:]
    after_first = await read_thread_stream(
        server, key, tid, ended(second["run_id"]), last_event_id=f"{first['run_id']}:done"
    )
    assert after_first == [f for f in whole if run_of(f) == second["run_id"]]

    # Joined while a run runs, without Last-Event-ID: that run from its first event.
    third = sdk.runs.create(tid, GRAPH, input={"seconds": 1})
    wait_until_running(sdk, tid, third["run_id"])
    joined = await read_thread_stream(server, key, tid, ended(third["run_id"]))
    assert {run_of(f) for f in joined} == {third["run_id"]}
    assert joined[0].id == f"{third['run_id']}:1" and joined[0].data["attempt"] == 1

    # `lifecycle`: each run's start and end only.
    lifecycle = await read_thread_stream(
        server,
        key,
        tid,
        ended(third["run_id"]),
        last_event_id=f"{first['run_id']}:done",
        params={"stream_modes": "lifecycle"},
    )
    assert [(f.event, run_of(f)) for f in lifecycle] == [
        ("metadata", run_id) for run_id in (second["run_id"],) * 2 + (third["run_id"],) * 2
    ]


def test_the_thread_stream_refuses_what_it_cannot_serve(server, keys):  # noqa: ANN001
    alice = {"x-api-key": keys["alice"]}
    tid = sdk_of(server, keys["alice"]).threads.create()["thread_id"]
    path = f"{server.url}/threads/{tid}/stream"
    cases = [
        (alice | {"Last-Event-ID": "42"}, {}, 422, "invalid Last-Event-ID '42'"),
        (alice | {"Last-Event-ID": f"{uuid.uuid4()}:x"}, {}, 422, "invalid Last-Event-ID"),
        (alice, {"stream_modes": "run_modes,bogus"}, 422, "stream mode 'bogus' is not"),
        ({"x-api-key": keys["bob"]}, {}, 404, f"thread {tid} not found"),
    ]
    for headers, params, status, detail in cases:
        response = httpx.get(path, headers=headers, params=params, timeout=10)
        assert response.status_code == status, (headers, params, response.text)
        assert detail in response.json()["detail"]
    unknown = httpx.get(f"{server.url}/threads/{uuid.uuid4()}/stream", headers=alice, timeout=10)
    assert unknown.status_code == 404


def test_thread_streams_count_against_the_users_bound_until_their_clients_go(server, keys):  # noqa: ANN001
    asyncio.run(hold_and_release(server, keys["bob"]))


async def hold_and_release(server: ServerProcess, key: str) -> None:
    """RUNQUEUE_API_MAX_STREAMS_PER_USER (20) thread streams held open; one more is 429; once
    their clients have gone, a stream opens again."""
    tid = sdk_of(server, key).threads.create()["thread_id"]
    headers = {"x-api-key": key}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        path = f"/threads/{tid}/stream"
        held = [client.stream("GET", path) for _ in range(20)]
        responses = [await stream.__aenter__() for stream in held]
        assert {response.status_code for response in responses} == {200}
        refused = await client.get(path)
        assert refused.status_code == 429 and "too many open streams" in refused.text
        for stream in held:
            await stream.__aexit__(None, None, None)
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        while True:
            async with client.stream("GET", path) as response:
                if response.status_code == 200:
                    return
            assert time.monotonic() < deadline, "the closed streams were never released"
            await asyncio.sleep(0.05)

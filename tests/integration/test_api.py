"""The HTTP API driven by the official langgraph-sdk (async and sync clients), against a real
`runqueue serve` process and a real prefork worker on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from runqueue.registry.assistants import default_assistant_id
from tests.api_support import ServerProcess

pytestmark = pytest.mark.integration

AGENT = "agent"  # tests/api_graphs.py


def client(server: ServerProcess, key: str):  # noqa: ANN201
    return get_client(url=server.url, api_key=key)


def names(parts: list) -> list[str]:  # noqa: ANN001
    return [part.event for part in parts]


# -- 1. the official clients drive it -------------------------------------------------------


def test_assistants_and_threads_with_the_async_client(server, keys) -> None:  # noqa: ANN001
    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        found = await sdk.assistants.search(graph_id=AGENT)
        # the default assistant: its id derived as the reference derives it
        assert [a["assistant_id"] for a in found] == [default_assistant_id(AGENT)]
        assert (await sdk.assistants.get(AGENT))["graph_id"] == AGENT
        with pytest.raises(NotFoundError):
            await sdk.assistants.get("no-such-assistant")

        thread = await sdk.threads.create(metadata={"project": "api-test", "n": 1})
        tid = thread["thread_id"]
        assert thread["status"] == "idle" and thread["metadata"]["project"] == "api-test"
        with pytest.raises(ConflictError):
            await sdk.threads.create(thread_id=tid)
        same = await sdk.threads.create(thread_id=tid, if_exists="do_nothing")
        assert same["thread_id"] == tid

        found = await sdk.threads.search(metadata={"project": "api-test"})
        assert [t["thread_id"] for t in found] == [tid]
        assert await sdk.threads.search(metadata={"project": "other"}) == []
        assert [t["thread_id"] for t in await sdk.threads.search(ids=[tid])] == [tid]

        run = await sdk.runs.create(tid, AGENT, input={"steps": []})
        assert run["status"] in ("pending", "running") and run["multitask_strategy"] == "enqueue"
        result = await sdk.runs.join(tid, run["run_id"])
        assert result["steps"] == ["work", "review", "respond"]
        assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "success"

        got = await sdk.threads.get(tid)
        assert got["status"] == "idle" and got["values"]["reply"] == "all done here"
        state = await sdk.threads.get_state(tid)
        assert state["values"]["steps"] == ["work", "review", "respond"] and state["next"] == []
        assert [t["thread_id"] for t in await sdk.threads.search(status="idle", ids=[tid])] == [tid]

        listed = await sdk.runs.list(tid)
        assert [r["run_id"] for r in listed] == [run["run_id"]]
        assert await sdk.runs.list(tid, status="error") == []

        await sdk.runs.delete(tid, run["run_id"])
        with pytest.raises(NotFoundError):
            await sdk.runs.get(tid, run["run_id"])
        await sdk.threads.delete(tid)
        with pytest.raises(NotFoundError):
            await sdk.threads.get(tid)

    asyncio.run(scenario())


def test_stream_modes_with_the_async_client(server, keys) -> None:  # noqa: ANN001
    async def stream(mode: str | list[str]) -> list:
        sdk = client(server, keys["alice"])
        tid = (await sdk.threads.create())["thread_id"]
        return [part async for part in sdk.runs.stream(tid, AGENT, input={}, stream_mode=mode)]

    async def scenario() -> None:
        values = await stream("values")
        assert names(values)[0] == "metadata" and names(values)[-1] == "end"
        assert set(names(values)[1:-1]) == {"values"}
        assert values[-2].data["steps"] == ["work", "review", "respond"]

        updates = await stream("updates")
        assert [list(p.data) for p in updates if p.event == "updates"] == [
            ["work"],
            ["review"],
            ["respond"],
        ]
        custom = await stream("custom")
        assert [p.data for p in custom if p.event == "custom"] == [{"progress": "working"}]

        for mode in ("messages", "messages-tuple"):
            messages = await stream(mode)
            tokens = [p.data[0]["content"] for p in messages if p.event == "messages"]
            assert "".join(tokens) == "all done here", mode
            assert messages[-1].event == "end"

    asyncio.run(scenario())


def test_the_sync_client_runs_waits_and_streams(server, keys) -> None:  # noqa: ANN001
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    assert sdk.runs.wait(tid, AGENT, input={})["steps"] == ["work", "review", "respond"]
    parts = list(sdk.runs.stream(tid, AGENT, input={}, stream_mode=["updates", "custom"]))
    assert names(parts)[0] == "metadata" and names(parts)[-1] == "end"
    assert "custom" in names(parts) and "updates" in names(parts)

    stateless = sdk.runs.wait(None, AGENT, input={})
    assert stateless["steps"] == ["work", "review", "respond"]

    failing = sdk.threads.create()["thread_id"]
    error = sdk.runs.wait(failing, AGENT, input={"fail": True}, raise_error=False)
    assert error == {"__error__": {"error": "ValueError", "message": "boom"}}
    assert sdk.threads.get(failing)["status"] == "error"
    parts = list(sdk.runs.stream(failing, AGENT, input={}, stream_mode="values"))
    assert names(parts)[-2:] == ["error", "end"]
    assert parts[-2].data == {"error": "ValueError", "message": "boom"}


def test_an_interrupt_waits_for_a_resume(server, keys) -> None:  # noqa: ANN001
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    paused = sdk.runs.wait(tid, AGENT, input={"ask": True})
    assert paused["__interrupt__"][0]["value"] == "approve?"
    assert sdk.threads.get(tid)["status"] == "interrupted"
    state = sdk.threads.get_state(tid)
    assert state["next"] == ["review"] and state["interrupts"][0]["value"] == "approve?"
    done = sdk.runs.wait(tid, AGENT, command={"resume": "yes"})
    assert done["answer"] == "yes" and done["steps"][-1] == "respond"
    assert sdk.threads.get(tid)["status"] == "idle"


def test_cancel_with_both_actions_with_and_without_wait(server, keys, api_backend) -> None:  # noqa: ANN001
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    manager = api_backend.manager()
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)

    def started(tid: str, seconds: float = 20) -> str:
        run = sdk.runs.create(tid, AGENT, input={"seconds": seconds})
        deadline = time.monotonic() + 30
        while sdk.runs.get(tid, run["run_id"])["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return run["run_id"]

    for action in ("interrupt", "rollback"):
        tid = sdk.threads.create()["thread_id"]
        rid = started(tid)
        answer = http.post(f"/threads/{tid}/runs/{rid}/cancel", params={"action": action})
        assert answer.status_code == 202
        deadline = time.monotonic() + 15
        while sdk.runs.get(tid, rid)["status"] != "interrupted":
            assert time.monotonic() < deadline
            time.sleep(0.05)

        rid = started(tid)
        began = time.monotonic()
        answer = http.post(
            f"/threads/{tid}/runs/{rid}/cancel", params={"action": action, "wait": 1}
        )
        assert answer.status_code == 200, answer.text
        # Answered only once the final status is written: no later look sees it running.
        assert sdk.runs.get(tid, rid)["status"] == "interrupted"
        # Seen once in a full run: 21 s (the node's 20 s sleep). The run's transitions, with
        # the database's times and details, say which stop took that long.
        transitions = [
            (e.at.isoformat(), e.status.value, e.worker, e.detail) for e in manager.events(rid)
        ]
        assert time.monotonic() - began < 10, (action, transitions)
        # A finished run: the reference server answers 404.
        again = http.post(f"/threads/{tid}/runs/{rid}/cancel")
        assert again.status_code == 404 and "detail" in again.json()
    # Rollback undid the graph's writes: the thread's state has no step of the cancelled run.
    assert "work" not in (sdk.threads.get_state(tid)["values"] or {}).get("steps", [])


def test_each_strategy_with_its_status_codes(server, keys) -> None:  # noqa: ANN001
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)

    def busy_thread() -> tuple[str, str]:
        tid = sdk.threads.create()["thread_id"]
        first = sdk.runs.create(tid, AGENT, input={"seconds": 2})
        return tid, first["run_id"]

    tid, first = busy_thread()
    refused = http.post(
        f"/threads/{tid}/runs", json={"assistant_id": AGENT, "multitask_strategy": "reject"}
    )
    assert refused.status_code == 409 and "detail" in refused.json()
    assert sdk.runs.join(tid, first)["steps"] == ["work", "review", "respond"]

    outcomes = {}
    for strategy in ("interrupt", "rollback", "enqueue"):
        tid, first = busy_thread()
        answer = http.post(
            f"/threads/{tid}/runs",
            json={"assistant_id": AGENT, "input": {"seconds": 0}, "multitask_strategy": strategy},
        )
        assert answer.status_code == 200, answer.text
        assert (
            answer.headers["Content-Location"] == f"/threads/{tid}/runs/{answer.json()['run_id']}"
        )
        second = answer.json()["run_id"]
        sdk.runs.join(tid, second)
        outcomes[strategy] = (
            sdk.runs.get(tid, first)["status"],
            sdk.runs.get(tid, second)["status"],
        )
    assert outcomes == {
        "interrupt": ("interrupted", "success"),
        "rollback": ("interrupted", "success"),
        "enqueue": ("success", "success"),
    }


def test_join_stream_reconnects_through_a_dropping_proxy(server, keys) -> None:  # noqa: ANN001
    """A proxy cuts the first stream connection mid-run; the SDK reconnects to the Location
    with Last-Event-ID by itself, and the events add up to the whole stream."""

    async def scenario() -> None:
        async with CuttingProxy(server.port, cut_after_bytes=300) as proxy:
            sdk = get_client(url=proxy.url, api_key=keys["alice"])
            tid = (await sdk.threads.create())["thread_id"]
            parts = [
                part
                async for part in sdk.runs.stream(
                    tid, AGENT, input={"seconds": 2}, stream_mode=["custom", "updates"]
                )
            ]
            assert proxy.cuts == 1 and proxy.connections >= 2
        direct = get_client(url=server.url, api_key=keys["alice"])
        run_id = parts[0].data["run_id"]
        replay = [part async for part in direct.runs.join_stream(tid, run_id)]
        assert names(parts) == names(replay)
        assert [p.data for p in parts[1:]] == [p.data for p in replay[1:]]
        assert names(parts)[-1] == "end" and "custom" in names(parts)

        # join_stream of a run already running, through a proxy that cuts it too.
        run = await direct.runs.create(
            tid, AGENT, input={"seconds": 2}, stream_mode=["custom", "updates"]
        )
        async with CuttingProxy(server.port, cut_after_bytes=160) as proxy:  # after metadata
            sdk = get_client(url=proxy.url, api_key=keys["alice"])
            joined = [part async for part in sdk.runs.join_stream(tid, run["run_id"])]
            assert proxy.cuts == 1 and proxy.connections >= 2
        replay = [part async for part in direct.runs.join_stream(tid, run["run_id"])]
        assert names(joined) == names(replay) and names(joined)[-1] == "end"
        assert [p.data for p in joined[1:]] == [p.data for p in replay[1:]]
        only = [p async for p in direct.runs.join_stream(tid, run["run_id"], stream_mode="custom")]
        assert names(only) == ["metadata", "custom", "end"]

    asyncio.run(scenario())


def test_values_over_the_event_limit_are_named_in_a_gap_and_whole_in_join(server, keys) -> None:  # noqa: ANN001
    """At the default limit (1 MiB): a ~900 KB input is accepted, and the values after `work`
    (1.8 MB) reach the client as a `gap` naming them, before `end`; join, the path the notice
    names, and the thread's state have them whole."""
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    pad = "p" * 900_000
    parts = list(sdk.runs.stream(tid, AGENT, input={"pad": pad}, stream_mode=["values", "custom"]))
    run_id = parts[0].data["run_id"]
    assert names(parts) == ["metadata", "values", "custom", "gap", "gap", "gap", "end"]
    assert parts[1].data == {"pad": pad, "steps": []}  # the input's values fit: sent whole
    join = f"GET /threads/{tid}/runs/{run_id}/join"
    for notice in parts[3:6]:
        left_out = notice.data["left_out"]
        assert left_out["bytes"] > 1_800_000 and notice.id is not None
        assert left_out == {
            "event": "values",
            "bytes": left_out["bytes"],
            "limit": 1024 * 1024,
            "setting": "RUNQUEUE_STREAM_MAX_EVENT_BYTES",
            "read": join,
        }
    # The place the notice names has the whole values, as do the thread's state and wait.
    method, path = join.split(" ")
    response = httpx.request(method, server.url + path, headers={"x-api-key": keys["alice"]})
    assert response.status_code == 200
    values = response.json()
    assert values["pad"] == values["pad_copy"] == pad
    assert values["steps"] == ["work", "review", "respond"]
    compact = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(compact) == parts[5].data["left_out"]["bytes"]  # the final values' size
    assert sdk.threads.get_state(tid)["values"] == values
    waited = sdk.runs.wait(tid, AGENT, input={"pad": pad})  # a second run, on the same thread
    assert waited["pad_copy"] == pad and waited["steps"] == values["steps"] * 2
    # A reader of other modes is not told about `values` it did not ask for.
    only = list(sdk.runs.join_stream(tid, run_id, stream_mode="custom"))
    assert names(only) == ["metadata", "custom", "end"]


class CuttingProxy:
    """A TCP proxy that closes the first streaming response after `cut_after_bytes` bytes of
    its body, as a proxy's idle or length limit would."""

    def __init__(self, upstream_port: int, cut_after_bytes: int):
        self.upstream_port, self.cut_after_bytes = upstream_port, cut_after_bytes
        self.cuts = 0
        self.connections = 0

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        armed = False  # this connection carries the first stream request: cut its response

        async def requests() -> None:
            nonlocal armed
            while data := await client_r.read(65536):
                if self.cuts == 0 and re.search(rb"^[A-Z]+ \S*/stream[ ?]", data):
                    armed = True
                up_w.write(data)
                await up_w.drain()

        async def responses() -> None:
            head: bytes | None = b""  # the status line and headers, never cut; None: passed
            sent = 0  # body bytes forwarded
            while data := await up_r.read(4096):
                if armed and head is not None:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end >= 0:
                        sent, head = len(head) - end - 4, None
                elif armed:
                    if sent + len(data) > self.cut_after_bytes:
                        client_w.write(data[: max(0, self.cut_after_bytes - sent)])
                        await client_w.drain()
                        self.cuts += 1
                        return
                    sent += len(data)
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.wait(
                [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for writer in (client_w, up_w):
                writer.close()

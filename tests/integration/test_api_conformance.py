"""Differential conformance of the HTTP API: one langgraph-sdk script runs against the
LangGraph reference server (`langgraph dev`, tests/reference/langgraph.json) and against
`runqueue serve` with a real worker on PostgreSQL + Redis, both serving the graph of
tests/api_graphs.py. The two transcripts must match item by item, except for the deliberate
differences listed in KNOWN_DIFFERENCES, each of which must still occur."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from runqueue.settings import Settings
from tests.api_support import API_APP, ServerProcess, api_server, free_port
from tests.conftest import require_services
from tests.integration.conftest import create_key
from tests.support import (
    REPO_ROOT,
    WorkerProcess,
    checkout_path,
    make_backend,
)

pytestmark = pytest.mark.integration

REFERENCE_CONFIG = REPO_ROOT / "tests" / "reference" / "langgraph.json"
GRAPH = "agent"
BUSY_SECONDS = 3  # how long a run keeps its thread busy in the multitask and cancel scenarios
SETTLED = ("success", "error", "timeout", "interrupted")


class Known(NamedTuple):
    """A deliberate difference: what each server answers, and why runqueue answers otherwise."""

    reference: Any
    runqueue: Any
    reason: str


ROLLBACK_KEEPS_THE_RUN = (
    "a run rolled back (by a cancel with action=rollback or by the rollback strategy) stays "
    "readable in runqueue, as `interrupted`; its checkpoints are rolled back all the same "
    "(multitask.rollback.state is equal). The reference deletes the run (GET: 404)."
)
# Observation name -> the deliberate difference. Every other observation must be equal, and
# every one of these must still occur with these values, so that the list stays true.
KNOWN_DIFFERENCES: dict[str, Known] = {
    "runs.wait.stateless.thread": Known(
        (404, True),
        (200, False),
        "runqueue keeps a stateless run's thread, with its history (runqueue/api/runs.py: "
        "create_stateless_run); the reference deletes it once the run ends.",
    ),
    "error.unknown_body_field": Known(
        (200, False),
        (422, True),
        "runqueue refuses a body with an unknown field (422) rather than ignore what it does "
        "not understand.",
    ),
    "multitask.rollback.first": Known(404, "interrupted", ROLLBACK_KEEPS_THE_RUN),
    "cancel.rollback.nowait.run": Known(404, "interrupted", ROLLBACK_KEEPS_THE_RUN),
    "cancel.rollback.wait.run": Known(404, "interrupted", ROLLBACK_KEEPS_THE_RUN),
    "error.unknown_assistant_name": Known(
        (422, True),
        (404, True),
        "an assistant is a registered name in runqueue: an unknown one is not found (404), "
        "where the reference answers 422 for a string that is neither a UUID nor a graph",
    ),
    "error.unknown_assistant_get": Known(
        (422, True),
        (404, True),
        "GET /assistants/{id} takes a name in runqueue; the reference wants a UUID (422)",
    ),
    "runs.stream.end_event": Known(
        [False],
        [True],
        "runqueue's SSE ends every stream with an explicit `end` event (the SDK reads `end` "
        "or `error` as the run's end, and reconnects otherwise); the reference just closes.",
    ),
}


# -- the script --------------------------------------------------------------------------------


@dataclass
class Transcript:
    """What one scenario observed, in order: (name, value) pairs."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    stream_ends: list[bool] = field(default_factory=list)  # per stream: did `end` close it?

    def note(self, name: str, value: Any) -> None:
        self.items.append((name, value))


Scenario = Callable[[LangGraphClient, Transcript], Awaitable[None]]


def error_shape(response: httpx.Response) -> tuple[int, bool]:
    """A refusal as compared: its status code, and whether its body is {"detail": ...}."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, False
    return response.status_code, isinstance(body, dict) and "detail" in body


async def run_status(client: LangGraphClient, thread_id: str, run_id: str) -> str | int:
    """The run's status, or the status code of a GET that found no run."""
    response = await client.http.client.get(f"/threads/{thread_id}/runs/{run_id}")
    if response.status_code != 200:
        return response.status_code
    return response.json()["status"]


async def settle(client: LangGraphClient, thread_id: str, run_id: str) -> str | int:
    """The run's final status (or 404 once it is gone), polled until it stops changing."""
    deadline = time.monotonic() + 30
    while True:
        status = await run_status(client, thread_id, run_id)
        if status in SETTLED or isinstance(status, int) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def settle_thread(client: LangGraphClient, thread_id: str) -> dict[str, Any]:
    """The thread once no run of it is in flight any more."""
    deadline = time.monotonic() + 30
    while True:
        thread = await client.threads.get(thread_id)
        if thread["status"] != "busy" or time.monotonic() > deadline:
            return thread
        await asyncio.sleep(0.1)


async def start_busy_run(client: LangGraphClient) -> tuple[str, str]:
    """A fresh thread with a run that keeps it busy for BUSY_SECONDS, once that run runs and
    its input is checkpointed (before that, what a cancel leaves behind depends on timing)."""
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, GRAPH, input={"seconds": BUSY_SECONDS})
    deadline = time.monotonic() + 30
    while True:
        status = await run_status(client, thread_id, run["run_id"])
        state = await client.threads.get_state(thread_id)
        if status == "running" and "seconds" in (state["values"] or {}):
            return thread_id, run["run_id"]
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run['run_id']} never started: {status}, {state}")
        await asyncio.sleep(0.05)


async def stream_parts(
    client: LangGraphClient, t: Transcript, thread_id: str | None, **kwargs: Any
) -> list[Any]:
    """A streamed run's events in order, without heartbeats nor a closing `end` (noted in
    the transcript's stream_ends, compared once for every stream)."""
    parts = [
        part
        async for part in client.runs.stream(thread_id, GRAPH, **kwargs)
        if part.event != "heartbeat"
    ]
    ended = bool(parts) and parts[-1].event == "end"
    t.stream_ends.append(ended)
    return parts[:-1] if ended else parts


def without_ids(interrupts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interrupts as compared: an interrupt's id is random, so only its presence counts."""
    return [{k: bool(v) if k == "id" else v for k, v in i.items()} for i in interrupts]


async def assistants(client: LangGraphClient, t: Transcript) -> None:
    found = await client.assistants.search(graph_id=GRAPH)
    t.note("assistants.search.graph_ids", [a["graph_id"] for a in found])
    got = await client.assistants.get(found[0]["assistant_id"])
    t.note("assistants.get.graph_id", got["graph_id"])


async def threads(client: LangGraphClient, t: Transcript) -> None:
    marker = uuid.uuid4().hex
    thread = await client.threads.create(metadata={"conformance": marker})
    thread_id = thread["thread_id"]
    t.note("threads.create", (thread["status"], thread["metadata"] == {"conformance": marker}))
    t.note("threads.create.values", thread["values"])
    got = await client.threads.get(thread_id)
    t.note("threads.get", (got["thread_id"] == thread_id, got["status"]))
    found = await client.threads.search(metadata={"conformance": marker})
    t.note("threads.search.metadata", [f["thread_id"] == thread_id for f in found])
    state = await client.threads.get_state(thread_id)
    t.note("threads.get_state.fresh", (state["values"], state["next"]))

    run = await client.runs.create(thread_id, GRAPH, input={})
    t.note("runs.create.status", run["status"])
    result = await client.runs.join(thread_id, run["run_id"])
    t.note("runs.join", result)
    t.note("runs.join.status", await run_status(client, thread_id, run["run_id"]))
    state = await client.threads.get_state(thread_id)
    t.note("threads.get_state.after_run", (state["values"], state["next"]))
    t.note("threads.get.after_run", (await client.threads.get(thread_id))["status"])
    listed = await client.runs.list(thread_id)
    t.note("runs.list", [r["run_id"] == run["run_id"] for r in listed])

    raw = client.http.client
    t.note("threads.delete", (await raw.delete(f"/threads/{thread_id}")).status_code)
    t.note("threads.get.deleted", error_shape(await raw.get(f"/threads/{thread_id}")))


async def waited(client: LangGraphClient, t: Transcript) -> None:
    thread = await client.threads.create()
    t.note("runs.wait", await client.runs.wait(thread["thread_id"], GRAPH, input={}))
    t.note("runs.wait.stateless", await client.runs.wait(None, GRAPH, input={}))
    raw = client.http.client
    response = await raw.post("/runs/wait", json={"assistant_id": GRAPH, "input": {}})
    thread_id = response.headers["content-location"].split("/")[2]
    t.note("runs.wait.stateless.thread", error_shape(await raw.get(f"/threads/{thread_id}")))


def streamed(mode: str | list[str]) -> Scenario:
    async def scenario(client: LangGraphClient, t: Transcript) -> None:
        thread = await client.threads.create()
        parts = await stream_parts(client, t, thread["thread_id"], input={}, stream_mode=mode)
        t.note(f"runs.stream.{mode}", [part.event for part in parts])

    return scenario


async def failing(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, GRAPH, input={"fail": True})
    joined = await client.runs.join(thread_id, run["run_id"])
    t.note("fail.join", joined)
    t.note("fail.status", await run_status(client, thread_id, run["run_id"]))
    t.note("fail.thread.status", (await client.threads.get(thread_id))["status"])

    thread_id = (await client.threads.create())["thread_id"]
    waited = await client.runs.wait(thread_id, GRAPH, input={"fail": True}, raise_error=False)
    t.note("fail.wait", waited)

    thread_id = (await client.threads.create())["thread_id"]
    parts = await stream_parts(client, t, thread_id, input={"fail": True})
    t.note("fail.stream", [part.event for part in parts])
    errors = [part.data for part in parts if part.event == "error"]
    t.note("fail.stream.error", errors)


async def interrupted(client: LangGraphClient, t: Transcript) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, GRAPH, input={"ask": True})
    joined = await client.runs.join(thread_id, run["run_id"])
    joined["__interrupt__"] = without_ids(joined.get("__interrupt__", []))
    t.note("interrupt.join", joined)
    t.note("interrupt.status", await run_status(client, thread_id, run["run_id"]))
    thread = await client.threads.get(thread_id)
    t.note("interrupt.thread.status", thread["status"])
    t.note(
        "interrupt.thread.interrupts",
        [without_ids(entries) for entries in thread["interrupts"].values()],
    )
    state = await client.threads.get_state(thread_id)
    t.note("interrupt.state.next", state["next"])
    t.note("interrupt.state.interrupts", without_ids(state["interrupts"]))
    t.note("interrupt.state.tasks", [task["name"] for task in state["tasks"]])
    resumed = await client.runs.wait(thread_id, GRAPH, command={"resume": "yes"})
    t.note("interrupt.resume", resumed)
    t.note("interrupt.resume.thread.status", (await client.threads.get(thread_id))["status"])

    thread_id = (await client.threads.create())["thread_id"]
    parts = await stream_parts(client, t, thread_id, input={"ask": True}, stream_mode="updates")
    t.note("interrupt.stream", [part.event for part in parts])
    t.note(
        "interrupt.stream.last", [without_ids(p.data.get("__interrupt__", [])) for p in parts[-1:]]
    )


def multitask(strategy: str) -> Scenario:
    async def scenario(client: LangGraphClient, t: Transcript) -> None:
        thread_id, first = await start_busy_run(client)
        response = await client.http.client.post(
            f"/threads/{thread_id}/runs",
            json={"assistant_id": GRAPH, "input": {"seconds": 0}, "multitask_strategy": strategy},
        )
        t.note(f"multitask.{strategy}.create", error_shape(response))
        second = response.json().get("run_id") if response.status_code == 200 else None
        t.note(f"multitask.{strategy}.first", await settle(client, thread_id, first))
        if second is not None:
            t.note(f"multitask.{strategy}.second", await settle(client, thread_id, second))
        state = await client.threads.get_state(thread_id)
        t.note(f"multitask.{strategy}.state", state["values"])

    return scenario


def cancelled(action: str, wait: bool) -> Scenario:
    async def scenario(client: LangGraphClient, t: Transcript) -> None:
        thread_id, run_id = await start_busy_run(client)
        response = await client.http.client.post(
            f"/threads/{thread_id}/runs/{run_id}/cancel",
            params={"wait": int(wait), "action": action},
        )
        name = f"cancel.{action}.{'wait' if wait else 'nowait'}"
        t.note(f"{name}.code", response.status_code)
        if wait:  # the reference answers the last values it saw after subscribing: any
            t.note(f"{name}.body", type(response.json()).__name__)
        t.note(f"{name}.run", await settle(client, thread_id, run_id))
        # After a rollback without wait, the reference's thread stays `busy` (30 s and more).
        if wait or action == "interrupt":
            thread = await settle_thread(client, thread_id)
            t.note(f"{name}.thread", (thread["status"], thread["values"]))

    return scenario


async def finished(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, GRAPH, input={})
    await client.runs.join(thread_id, run["run_id"])
    response = await raw.post(f"/threads/{thread_id}/runs/{run['run_id']}/cancel")
    t.note("cancel.finished", error_shape(response))
    response = await raw.delete(f"/threads/{thread_id}/runs/{run['run_id']}")
    t.note("runs.delete", response.status_code)
    t.note("runs.delete.get", await run_status(client, thread_id, run["run_id"]))


async def refusals(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    thread_id = (await client.threads.create())["thread_id"]
    runs = f"/threads/{thread_id}/runs"
    cases: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        "unknown_thread_reject": (
            "POST",
            f"/threads/{uuid.uuid4()}/runs",
            {"assistant_id": GRAPH, "if_not_exists": "reject"},
        ),
        "unknown_thread_get": ("GET", f"/threads/{uuid.uuid4()}", None),
        "unknown_assistant_name": ("POST", runs, {"assistant_id": "no-such-graph"}),
        "unknown_assistant_uuid": ("POST", runs, {"assistant_id": str(uuid.uuid4())}),
        "unknown_assistant_get": ("GET", "/assistants/no-such-graph", None),
        "invalid_multitask_strategy": (
            "POST",
            runs,
            {"assistant_id": GRAPH, "multitask_strategy": "sometimes"},
        ),
        "malformed_run_id": ("GET", f"{runs}/not-a-run-id", None),
        "unknown_run_id": ("GET", f"{runs}/{uuid.uuid4()}", None),
        "unknown_body_field": ("POST", "/threads", {"no_such_field": 1}),
    }
    for name, (method, path, body) in cases.items():
        t.note(f"error.{name}", error_shape(await raw.request(method, path, json=body)))


# Waves of scenarios, each wave all at once: the quick ones, then those that hold a thread
# busy, four at a time. The reference runs a sync node in its event loop's default executor
# (cores + 4 threads, 6 here) and reads a thread's state in it too: with more sleeping nodes,
# a state read or a cancel waits for a sleep to end, and races with the run's own end.
WAVES: list[list[Scenario]] = [
    [
        assistants,
        threads,
        waited,
        *(streamed(mode) for mode in ("values", "updates", "custom", "messages-tuple")),
        streamed(["values", "updates", "custom", "messages-tuple"]),
        failing,
        interrupted,
        finished,
        refusals,
    ],
    [multitask(strategy) for strategy in ("reject", "interrupt", "rollback", "enqueue")],
    [cancelled(action, wait) for action in ("interrupt", "rollback") for wait in (False, True)],
]


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    """Every scenario, each on threads of its own; their observations in the order of WAVES."""
    parts: list[Transcript] = []
    for wave in WAVES:
        wave_parts = [Transcript() for _ in wave]
        await asyncio.gather(*(s(client, p) for s, p in zip(wave, wave_parts, strict=True)))
        parts += wave_parts
    ends = sorted({ended for part in parts for ended in part.stream_ends})
    return [item for part in parts for item in part.items] + [("runs.stream.end_event", ends)]


# -- the servers -------------------------------------------------------------------------------


@dataclass
class Servers:
    reference: str
    runqueue: str
    api_key: str
    settings: Settings  # runqueue's: its database and broker, for tests that look inside


def reference_server(tmp_path: Path) -> ServerProcess:
    """`langgraph dev` in a folder of its own (its in-memory store writes there), importing
    tests.api_graphs from this checkout."""
    langgraph = Path(sys.executable).parent / "langgraph"
    if not langgraph.exists():
        pytest.fail(f"{langgraph} missing: pip install 'langgraph-cli[inmem]'", pytrace=False)
    folder = tmp_path / "reference"
    folder.mkdir()
    shutil.copy(REFERENCE_CONFIG, folder / "langgraph.json")
    port = free_port()
    argv = [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port)]
    argv += ["--n-jobs-per-worker", "10", "--config", "langgraph.json"]
    env = os.environ | checkout_path()
    env |= {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1"}
    return ServerProcess(argv, env, folder / "server.log", port, folder)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The reference server and runqueue (API with auth on, worker, PostgreSQL + Redis),
    started side by side; every process stopped by its pid."""
    require_services()
    tmp_path = tmp_path_factory.mktemp("conformance")
    reference = reference_server(tmp_path)
    stops: list[Callable[[], None]] = [reference.stop]
    try:
        with ThreadPoolExecutor(1) as pool:  # leaving waits for the reference to be up (or not)
            starting = pool.submit(reference.start)
            backend = make_backend("postgres_redis", tmp_path, app=API_APP)
            stops.append(backend.close)
            worker = WorkerProcess(backend.settings, tmp_path / "worker.log", concurrency=8)
            stops.append(worker.stop)
            worker.start()
            key = create_key(backend, "alice")
            api = api_server(backend.settings, tmp_path / "api.log")
            stops.append(api.stop)
            api.start()
            starting.result()
        yield Servers(reference.url, api.url, key, backend.settings)
    finally:
        for stop in reversed(stops):
            stop()


Transcribe = Callable[[LangGraphClient], Awaitable[list[tuple[str, Any]]]]


def transcripts(servers: Servers, transcribe: Transcribe) -> tuple[list, list]:
    """One script's transcripts, (reference, runqueue), run on both servers at once."""

    async def both() -> tuple[list, list]:
        reference = get_client(url=servers.reference, api_key=None)
        runqueue = get_client(url=servers.runqueue, api_key=servers.api_key)
        return await asyncio.gather(transcribe(reference), transcribe(runqueue))

    return asyncio.run(both())


def assert_conformant(
    reference: list[tuple[str, Any]], runqueue: list[tuple[str, Any]], known: dict[str, Known]
) -> None:
    """The transcripts match item by item, except for the `known` differences, each of which
    must still occur with its listed values (so that the list stays true)."""
    assert [name for name, _ in runqueue] == [name for name, _ in reference]
    differences = {
        name: (theirs, ours)
        for (name, theirs), (_, ours) in zip(reference, runqueue, strict=True)
        if theirs != ours
    }
    for name, (theirs, ours) in differences.items():  # shown when the test fails
        print(f"{name}:\n  reference: {theirs!r}\n  runqueue:  {ours!r}")
    unexpected = {n: d for n, d in differences.items() if n not in known}
    changed = {
        name: differences.get(name)
        for name, listed in known.items()
        if differences.get(name) != (listed.reference, listed.runqueue)
    }
    assert not unexpected and not changed, (
        f"runqueue differs from the reference (reference, runqueue): {unexpected}; "
        f"known differences that no longer occur as listed (None: equal now): {changed}"
    )


def test_runqueue_answers_as_the_reference_server_does(servers: Servers) -> None:
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)

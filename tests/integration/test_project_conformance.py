"""A graph folder made for `langgraph dev` runs on runqueue unchanged (issue 26): the folder
tests/reference_project (its own langgraph.json and env, async nodes, an async factory
taking the run's config, a subgraph, a runtime context, a chat model) is served by
`langgraph dev` and by `runqueue --config langgraph.json serve` + `worker` on PostgreSQL +
Redis. For every stream mode the same run is streamed from both, and the sequences of event
names and data must be equal, ids and times aside, and so must the thread's final state.

What is compared of each mode's data is what a client reads: the reference adds its own
deployment's keys to every config and metadata it streams (`langgraph_api_url`,
`langgraph_host`, its auth user, ...), and runqueue its own (`run_id`, `thread_id` in the
checkpoint metadata): those keys are left out of both sides (see `comparable`)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from langgraph_sdk import get_client

from tests.api_support import ServerProcess, free_port
from tests.conftest import require_services
from tests.support import (
    REPO_ROOT,
    WorkerProcess,
    as_process,
    checkout_path,
    make_backend,
    settings_env,
)

pytestmark = pytest.mark.integration

PROJECT = REPO_ROOT / "tests" / "reference_project"
GRAPH = "assistant"
MODES = ("values", "updates", "custom", "messages-tuple", "tasks", "checkpoints", "debug", "events")
RUN = {
    "input": {"topic": "queues"},
    "context": {"user": "ada", "style": "long", "unknown": "dropped by the context schema"},
    "stream_subgraphs": True,
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")
# Keys whose values are a deployment's own (ids, clocks, hosts, auth): left out of both sides.
DEPLOYMENT_KEYS = frozenset(
    {"metadata", "timestamp", "config", "parent_config", "created_at", "run_id", "parent_ids"}
)


def scrubbed(value: Any) -> Any:
    """Ids and times replaced by placeholders, everywhere in a value (keys included)."""
    if isinstance(value, str):
        return TIME.sub("<time>", UUID.sub("<id>", value))
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(item) for item in value]
    return value


def comparable(mode: str, data: Any) -> Any:
    """What a client reads of one event's data: ids and times scrubbed, the deployments' own
    keys left out; a `messages` chunk's metadata reduced to the node that streamed it."""
    if mode == "messages-tuple" and isinstance(data, list) and len(data) == 2:
        message, metadata = data
        return [scrubbed(message), {"langgraph_node": metadata.get("langgraph_node")}]
    return scrubbed(_without_deployment_keys(data))


def _without_deployment_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_deployment_keys(v) for k, v in value.items() if k not in DEPLOYMENT_KEYS
        }
    if isinstance(value, list):
        return [_without_deployment_keys(item) for item in value]
    return value


class Seen(NamedTuple):
    events: list[tuple[str, Any]]
    state: Any


async def stream_mode(url: str, api_key: str | None, mode: str) -> Seen:
    """One run of the project's graph streamed in `mode` on a new thread, and that thread's
    state after it."""
    client = get_client(url=url, api_key=api_key)
    thread = await client.threads.create()
    events = []
    async for part in client.runs.stream(thread["thread_id"], GRAPH, stream_mode=mode, **RUN):
        if part.event in ("metadata", "heartbeat", "end"):
            continue
        events.append((scrubbed(part.event), comparable(mode, part.data)))
    state = await client.threads.get_state(thread["thread_id"])
    return Seen(events, scrubbed({"values": state["values"], "next": state["next"]}))


class Servers(NamedTuple):
    reference: str
    runqueue: str
    api_key: str


def reference_server(folder: Path) -> ServerProcess:
    """`langgraph dev` in a copy of the project folder, as its authors run it."""
    langgraph = Path(sys.executable).parent / "langgraph"
    port = free_port()
    argv = [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port)]
    argv += ["--config", "langgraph.json"]
    env = os.environ | {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1"}
    return ServerProcess(argv, env, folder / "server.log", port, folder)


def runqueue_server(folder: Path, env: dict[str, str]) -> ServerProcess:
    """`runqueue --config langgraph.json serve`, in the same project folder."""
    port = free_port()
    argv = [sys.executable, "-m", "runqueue", "--config", "langgraph.json", "serve"]
    argv += ["--port", str(port), "--log-level", "warning"]
    return ServerProcess(argv, env, folder / "api.log", port, folder)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Both servers on copies of the project folder; every process stopped by its pid."""
    require_services()
    tmp_path = tmp_path_factory.mktemp("project")
    reference_folder = tmp_path / "reference"
    runqueue_folder = tmp_path / "runqueue"
    for folder in (reference_folder, runqueue_folder):
        shutil.copytree(PROJECT, folder, ignore=shutil.ignore_patterns("__pycache__"))
    stops = []
    try:
        reference = reference_server(reference_folder)
        stops.append(reference.stop)
        reference.start()
        backend = make_backend("postgres_redis", tmp_path, imports="")
        stops.append(backend.close)
        env = settings_env(backend.settings) | checkout_path()
        worker = WorkerProcess(
            backend.settings,
            tmp_path / "worker.log",
            cwd=runqueue_folder,
            extra_env={"RUNQUEUE_CONFIG": str(runqueue_folder / "langgraph.json")},
        )
        stops.append(worker.stop)
        worker.start()
        created = subprocess.run(
            as_process(["runqueue", "api-key", "create", "alice"]),
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        api = runqueue_server(runqueue_folder, env)
        stops.append(api.stop)
        api.start()
        yield Servers(reference.url, api.url, created.stdout.strip().splitlines()[-1])
    finally:
        for stop in reversed(stops):
            stop()


@pytest.mark.parametrize("mode", MODES)
def test_each_stream_mode_streams_what_langgraph_dev_streams(servers: Servers, mode: str) -> None:
    async def both() -> tuple[Seen, Seen]:
        return await asyncio.gather(
            stream_mode(servers.reference, None, mode),
            stream_mode(servers.runqueue, servers.api_key, mode),
        )

    reference, runqueue = asyncio.run(both())
    assert reference.events, f"the reference streamed no {mode} event"
    assert [name for name, _ in runqueue.events] == [name for name, _ in reference.events]
    for index, (theirs, ours) in enumerate(zip(reference.events, runqueue.events, strict=True)):
        assert ours == theirs, f"{mode} event #{index}"
    assert runqueue.state == reference.state

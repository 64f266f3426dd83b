"""Open streams over HTTP, against a real `runqueue serve` and prefork worker on PostgreSQL +
Redis: 60 SSE streams of four users share a few Redis connections of the API process (one
blocking XREAD for all of them, redis_multiplexer.py), and each still gets every event; a user
past RUNQUEUE_API_MAX_STREAMS_PER_USER is refused with 429 before anything is written, other
users are not, and the count goes down when a stream ends, fails or its client goes away."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from runqueue.stream.redis_multiplexer import CLIENT_NAME
from tests.api_support import ServerProcess, api_server, table_counts
from tests.integration.conftest import create_key
from tests.support import redis_clients

pytestmark = pytest.mark.integration

STEPS = 5  # each run streams `step` 1..5, then `end`
RUN = {"assistant_id": "steps", "input": {"steps": STEPS, "delay": 0.4}}
QUICK_RUN = {"assistant_id": "steps", "input": {"steps": 1, "delay": 0.0}}
RUNS_PER_USER, READERS_PER_RUN = 3, 5  # four users: 60 streams, 15 each (the bound is 20)
BOUND = 3  # the bounded server's RUNQUEUE_API_MAX_STREAMS_PER_USER
STREAM_READS = {"xread", "hget", "exists"}  # a connection that last did one reads a run stream


@pytest.fixture(scope="module")
def bounded_server(api_backend, api_worker, tmp_path_factory) -> Iterator[ServerProcess]:  # noqa: ANN001
    log = Path(tmp_path_factory.mktemp("api-bounded")) / "api.log"
    settings = api_backend.settings.with_overrides(api_max_streams_per_user=BOUND)
    process = api_server(settings, log).start()
    yield process
    process.stop()


async def frames(response: httpx.Response, opened: list[int]) -> list[tuple[str, str, Any]]:
    """The SSE frames as (event, id, data), to the end of the response; counts itself in
    `opened` at its first frame."""
    events: list[tuple[str, str, Any]] = []
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(":")
            frame[field] = value.strip()
            continue
        if "event" in frame:
            events.append((frame["event"], frame.get("id", ""), json.loads(frame["data"])))
            if len(events) == 1:
                opened.append(1)
        frame = {}
    return events


def test_sixty_streams_share_a_few_redis_connections_and_get_every_event(
    server,
    api_backend,
    keys,  # noqa: ANN001
) -> None:
    users = [keys["alice"], keys["bob"], create_key(api_backend, "carol")]
    users.append(create_key(api_backend, "dave"))
    opened: list[int] = []
    total = len(users) * RUNS_PER_USER * READERS_PER_RUN

    async def one_run(http: httpx.AsyncClient) -> list[list[tuple[str, str, Any]]]:
        """The run's creator streams it (POST .../runs/stream); four more readers join it."""
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        run_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def create() -> list[tuple[str, str, Any]]:
            async with http.stream("POST", f"/threads/{tid}/runs/stream", json=RUN) as response:
                assert response.status_code == 200
                run_id.set_result(response.headers["Content-Location"].rsplit("/", 1)[1])
                return await frames(response, opened)

        async def join() -> list[tuple[str, str, Any]]:
            path = f"/threads/{tid}/runs/{await run_id}/stream"
            async with http.stream("GET", path) as response:
                assert response.status_code == 200
                return await frames(response, opened)

        joins = [join() for _ in range(READERS_PER_RUN - 1)]
        return list(await asyncio.gather(create(), *joins))

    async def one_user(key: str) -> list[list[tuple[str, str, Any]]]:
        timeout = httpx.Timeout(60.0, read=180.0)
        async with httpx.AsyncClient(
            base_url=server.url, headers={"x-api-key": key}, timeout=timeout
        ) as http:
            runs = await asyncio.gather(*(one_run(http) for _ in range(RUNS_PER_USER)))
        return [stream for run in runs for stream in run]

    async def sample() -> list[tuple[int, int, int]]:
        """The API process's Redis connections while every stream is open and waiting: all
        of them, the multiplexer's, and any other that last read a run stream."""
        deadline = time.monotonic() + 60
        while len(opened) < total:
            assert time.monotonic() < deadline, f"{len(opened)} of {total} streams opened"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # each is past its `metadata`, inside its wait
        samples = []
        for _ in range(5):
            clients = await asyncio.to_thread(redis_clients, server.pid)
            named = [client for client in clients if client.get("name") == CLIENT_NAME]
            readers = [c for c in clients if c not in named and c["cmd"] in STREAM_READS]
            samples.append((len(clients), len(named), len(readers)))
            await asyncio.sleep(0.3)
        return samples

    async def scenario() -> tuple[list[list[tuple[str, str, Any]]], list[tuple[int, ...]]]:
        started = time.monotonic()
        users_done = asyncio.gather(*(one_user(key) for key in users))
        samples = await sample()
        streams = [stream for user in await users_done for stream in user]
        print(f"{total} streams in {time.monotonic() - started:.1f} s")
        return streams, samples

    streams, samples = asyncio.run(scenario())
    print(f"API process Redis connections (all, multiplexer, other readers): {samples}")
    assert len(streams) == total
    for events in streams:
        names = [event for event, _id, _data in events]
        assert names == ["metadata"] + ["step"] * STEPS + ["end"], names
        assert [event_id for _event, event_id, _data in events] == [
            str(n) for n in (0, *range(2, STEPS + 3))
        ]
        assert [data["step"] for event, _id, data in events if event == "step"] == list(
            range(1, STEPS + 1)
        )
        assert events[-1][2] == {"status": "success"}
    # 60 streams wait on the multiplexer's blocking connection and its small pool, and on no
    # other connection (before: one each). The rest are the broker's (Celery's producer
    # pool), as many with 60 streams as with none.
    for every, multiplexer, other_readers in samples:
        assert 1 <= multiplexer <= 4 and other_readers == 0
        assert every < total / 2
    assert max(sample[0] for sample in samples) - min(sample[0] for sample in samples) <= 1


def test_a_user_past_the_bound_gets_429_before_anything_is_written(
    bounded_server,
    api_backend,
    keys,  # noqa: ANN001
) -> None:
    alice = httpx.Client(
        base_url=bounded_server.url, headers={"x-api-key": keys["alice"]}, timeout=60
    )
    bob = httpx.Client(base_url=bounded_server.url, headers={"x-api-key": keys["bob"]}, timeout=60)
    # Refused requests give their hold back: five 404s leave the bound whole.
    for _ in range(5):
        gone = alice.get(f"/threads/{uuid.uuid4()}/runs/{uuid.uuid4()}/stream")
        assert gone.status_code == 404
    tid = alice.post("/threads", json={}).json()["thread_id"]
    long_run = {"assistant_id": "steps", "input": {"steps": 300, "delay": 0.2}}
    rid = alice.post(f"/threads/{tid}/runs", json=long_run).json()["run_id"]
    run_path = f"/threads/{tid}/runs/{rid}"

    with ExitStack() as held:
        streams = [held.enter_context(alice.stream("GET", f"{run_path}/stream")) for _ in range(3)]
        assert [stream.status_code for stream in streams] == [200] * BOUND
        before = table_counts(api_backend)
        new_thread = str(uuid.uuid4())
        refused = {
            "thread stream": alice.post(
                f"/threads/{new_thread}/runs/stream", json=QUICK_RUN | {"if_not_exists": "create"}
            ),
            "stateless stream": alice.post("/runs/stream", json=QUICK_RUN),
            "stateless wait": alice.post("/runs/wait", json=QUICK_RUN),
            "thread wait": alice.post(
                f"/threads/{new_thread}/runs/wait", json=QUICK_RUN | {"if_not_exists": "create"}
            ),
            "join": alice.get(f"{run_path}/join"),
            "join stream": alice.get(f"{run_path}/stream"),
            "cancel and wait": alice.post(f"{run_path}/cancel", params={"wait": 1}),
        }
        for name, answer in refused.items():
            assert answer.status_code == 429, (name, answer.text)
            assert answer.headers["Retry-After"] == "5", name
            assert "too many open streams" in answer.json()["detail"], name
        assert table_counts(api_backend) == before  # no run, no thread, no event
        assert alice.get(run_path).json()["status"] in ("pending", "running")  # not cancelled
        assert alice.get(run_path).status_code == 200  # what holds nothing still answers

        # Another user has a bound of their own.
        with bob.stream("POST", "/runs/stream", json=QUICK_RUN) as bobs:
            assert bobs.status_code == 200
            assert '"status":"success"' in bobs.read().decode()

        # One of alice's clients goes away: the server notices, and she may open one again.
        streams.pop(0).close()
        deadline = time.monotonic() + 5
        while True:
            again = held.enter_context(alice.stream("GET", f"{run_path}/stream"))
            if again.status_code == 200:
                break
            again.close()
            assert time.monotonic() < deadline, "the closed stream's hold was not released"
            time.sleep(0.1)
        streams.append(again)
        assert alice.get(f"{run_path}/join").status_code == 429  # full again

        # A cancel that does not wait holds nothing: it is not refused. The run's end ends
        # the three streams, and their holds with them.
        assert alice.post(f"{run_path}/cancel").status_code == 202
        for stream in streams:
            assert '"status":"interrupted"' in stream.read().decode()
    # Once the streams' responses are over, their holds are given back (a moment after the
    # client read the last byte).
    deadline = time.monotonic() + 5
    while (waited := alice.post("/runs/wait", json=QUICK_RUN)).status_code == 429:
        assert time.monotonic() < deadline, "the ended streams' holds were not released"
        time.sleep(0.05)
    assert waited.status_code == 200 and waited.json() == {"steps": 1}

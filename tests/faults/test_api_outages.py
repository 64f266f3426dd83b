"""The HTTP API while the run stream's Redis is killed mid-run: a waiting client still gets
the run's final values, never an error; a streaming langgraph-sdk client is told nothing
false (no `error`), reconnects by itself, and ends at the run's `end`."""

from __future__ import annotations

import threading
import time

import httpx
from langgraph_sdk import get_sync_client

from tests.api_support import API_APP, api_server
from tests.faults import faultkit

AGENT = "agent"


def test_waits_and_streams_outlive_the_stream_store(
    shared_database,
    shared_broker_url,
    private_redis,
    workers,
    report,
    tmp_path,  # noqa: ANN001
) -> None:
    backend = faultkit.fault_backend(
        tmp_path,
        shared_database,
        shared_broker_url,
        stream_url=private_redis.url,
        app=API_APP,
        api_auth="off",
    )
    workers(backend.settings, concurrency=2)
    server = api_server(backend.settings, tmp_path / "api.log").start()
    try:
        http = httpx.Client(base_url=server.url, timeout=120)
        waited: dict[str, httpx.Response] = {}
        wait_thread = http.post("/threads", json={}).json()["thread_id"]

        def wait() -> None:
            body = {"assistant_id": AGENT, "input": {"seconds": 4}}
            waited["answer"] = http.post(f"/threads/{wait_thread}/runs/wait", json=body)

        waiter = threading.Thread(target=wait)
        waiter.start()
        sdk = get_sync_client(url=server.url)
        stream_thread = sdk.threads.create()["thread_id"]
        parts = []
        for part in sdk.runs.stream(
            stream_thread, AGENT, input={"seconds": 4}, stream_mode=["custom", "updates"]
        ):
            parts.append(part)
            if part.event == "custom":  # both runs are in their silent sleep: kill Redis
                private_redis.stop()
                time.sleep(1.0)
                private_redis.start()
        waiter.join(60)
        answer = waited["answer"]
        events = [part.event for part in parts]
        report("api-stream-store-killed", runs=2, stream_events=len(events))
        assert answer.status_code == 200
        assert answer.json()["steps"] == ["work", "review", "respond"], answer.text
        assert "error" not in events and events[0] == "metadata" and events[-1] == "end"
        assert parts[-1].data == {"status": "success"}
        run = sdk.runs.list(stream_thread)[0]
        assert run["status"] == "success"
    finally:
        server.stop()

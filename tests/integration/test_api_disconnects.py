"""Disconnects over SSE: a client that goes away cancels its on_disconnect=cancel run within
2 s, noticed at the transport while the run is silent; a client that stays connected through
a long silent run is never taken for gone, and gets a heartbeat at least every 15 s."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.integration

AGENT = "agent"


def status_of(http: httpx.Client, tid: str, rid: str) -> str:
    return http.get(f"/threads/{tid}/runs/{rid}").json()["status"]


def test_a_client_that_goes_away_has_its_run_cancelled_within_2s(server, keys) -> None:  # noqa: ANN001
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)
    tid = http.post("/threads", json={}).json()["thread_id"]
    body = {
        "assistant_id": AGENT,
        "input": {"seconds": 30},
        "on_disconnect": "cancel",
        "stream_mode": "custom",
    }
    with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        assert response.status_code == 200
        rid = response.headers["Content-Location"].rsplit("/", 1)[1]
        lines = response.iter_lines()
        while "custom" not in next(lines):  # the run is inside its silent sleep now
            pass
        assert status_of(http, tid, rid) == "running"
        # Leaving the block closes the connection, with no event pending to notice it by.
        gone_at = time.monotonic()
    while status_of(http, tid, rid) != "interrupted":
        assert time.monotonic() - gone_at < 2.0, "run not cancelled within 2 s of the disconnect"
        time.sleep(0.05)
    print(f"cancelled {time.monotonic() - gone_at:.2f} s after the client went away")


def test_a_client_that_stays_through_a_silent_60s_run_is_never_taken_for_gone(
    server,
    keys,  # noqa: ANN001
) -> None:
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=90)
    tid = http.post("/threads", json={}).json()["thread_id"]
    body = {
        "assistant_id": AGENT,
        "input": {"seconds": 60},
        "on_disconnect": "cancel",
        "stream_mode": "updates",
    }
    events, heartbeats = [], []
    began = time.monotonic()
    with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        rid = response.headers["Content-Location"].rsplit("/", 1)[1]
        for line in response.iter_lines():
            if line.startswith(":"):
                heartbeats.append(time.monotonic())
            elif line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    took = time.monotonic() - began
    assert took >= 60
    assert events[0] == "metadata" and events[-1] == "end"
    assert status_of(http, tid, rid) == "success"
    gaps = [b - a for a, b in zip([began, *heartbeats], heartbeats, strict=False)]
    assert len(heartbeats) >= 3 and max(gaps) <= 16.0, gaps


def test_a_waiting_client_that_goes_away_has_its_run_cancelled(server, keys) -> None:  # noqa: ANN001
    """POST .../runs/wait with on_disconnect=cancel: the same promise as a stream's."""
    http = httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}, timeout=60)
    tid = http.post("/threads", json={}).json()["thread_id"]
    body = {"assistant_id": AGENT, "input": {"seconds": 30}, "on_disconnect": "cancel"}
    with http.stream("POST", f"/threads/{tid}/runs/wait", json=body) as response:
        assert response.status_code == 200
        rid = response.headers["Content-Location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 30
        while status_of(http, tid, rid) != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gone_at = time.monotonic()
    while status_of(http, tid, rid) != "interrupted":
        assert time.monotonic() - gone_at < 2.0, "run not cancelled within 2 s of the disconnect"
        time.sleep(0.05)
    print(f"cancelled {time.monotonic() - gone_at:.2f} s after the waiting client went away")

"""A per-user bound on runs in flight over HTTP: one key cannot queue its runs ahead of every
other user's. Past RUNQUEUE_API_MAX_RUNS_IN_FLIGHT_PER_USER the next create answers 429 with
Retry-After and writes nothing; other users create and read at their usual latency; once a
run of the user ends, the user may create again."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api_support import API_APP, ServerProcess, api_server, table_counts
from tests.conftest import require_services
from tests.integration.conftest import create_key
from tests.support import Backend, WorkerProcess, make_backend, wait_until

pytestmark = pytest.mark.integration

BOUND = 3


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backend, ServerProcess]]:
    require_services()
    folder = tmp_path_factory.mktemp("in-flight")
    backend = make_backend(
        "postgres_redis", folder, app=API_APP, api_max_runs_in_flight_per_user=BOUND
    )
    worker = WorkerProcess(backend.settings, folder / "worker.log", concurrency=2).start()
    server = api_server(backend.settings, folder / "api.log").start()
    try:
        yield backend, server
    finally:
        server.stop()
        worker.stop()
        backend.close()


def latency(http: httpx.Client, count: int = 20) -> float:
    """The median of `count` thread searches, in seconds."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        assert http.post("/threads/search", json={"limit": 1}).status_code == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_a_user_past_the_bound_gets_429_and_others_do_not_notice(bounded):
    backend, server = bounded
    alice = httpx.Client(
        base_url=server.url, headers={"x-api-key": create_key(backend, "alice")}, timeout=60
    )
    bob = httpx.Client(
        base_url=server.url, headers={"x-api-key": create_key(backend, "bob")}, timeout=60
    )
    quiet = latency(bob)
    long_run = {"assistant_id": "steps", "input": {"steps": 40, "delay": 0.1}}
    held = []
    for _ in range(BOUND):
        answer = alice.post("/runs", json=long_run)
        assert answer.status_code == 200, answer.text
        held.append(answer.json())
    before = {table: table_counts(backend)[table] for table in ("threads", "runs")}
    for path in ("/runs", "/runs/wait", "/runs/stream"):
        refused = alice.post(path, json=long_run)
        assert refused.status_code == 429, (path, refused.text)
        assert int(refused.headers["Retry-After"]) >= 1
        assert "pending or running" in refused.json()["detail"]
    after = {table: table_counts(backend)[table] for table in ("threads", "runs")}
    assert after == before  # nothing of a refused run was written
    busy = latency(bob)
    assert busy <= 3 * quiet + 0.05, (quiet, busy)
    mine = bob.post("/runs", json={"assistant_id": "echo", "input": {}})
    assert mine.status_code == 200, mine.text
    # Cancel one of alice's: she may create one more, and no more.
    first = held[0]
    cancel = alice.post(f"/threads/{first['thread_id']}/runs/{first['run_id']}/cancel?wait=1")
    assert cancel.status_code == 200
    wait_until(lambda: alice.post("/runs", json=long_run).status_code == 200, timeout=30)
    assert alice.post("/runs", json=long_run).status_code == 429
    print(f"search p50 quiet {quiet * 1000:.1f} ms, while alice is refused {busy * 1000:.1f} ms")

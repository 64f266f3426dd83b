"""An interrupt storm over HTTP: 15 runs created on one thread with multitask_strategy
`interrupt`, 20 to 150 ms apart (random, seeded), against a real `runqueue serve` and a real
prefork worker, on both backends, for a sync and an async graph (tests/matrix_graphs.py).

Each new run interrupts the one before it. Exactly one run may succeed, the last, and the
`work` node's own journal (one line per 10 ms tick, with its monotonic time) shows that no
two runs' node executions ever overlapped."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runqueue.journal import Journal
from tests.api_support import ServerProcess, api_server
from tests.conftest import require_services
from tests.integration.conftest import create_key
from tests.matrix_graphs import assistant_name
from tests.support import Backend, WorkerProcess, make_backend

CREATES = 15
GAPS_MS = (20, 150)
SEED = 26
TICKS = 40  # 0.4 s of work: most runs are interrupted mid-node


@pytest.fixture(scope="module", params=["embedded", "postgres_redis"])
def storm_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param != "embedded":
        require_services()
    backend = make_backend(
        request.param,
        tmp_path_factory.mktemp("storm"),
        imports="tests.matrix_graphs:register",
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def storm_server(
    storm_backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """`runqueue serve` and a prefork worker of the matrix's prefork graphs; an API key."""
    logs = Path(tmp_path_factory.mktemp("storm-processes"))
    worker = WorkerProcess(
        storm_backend.settings.with_overrides(imports="tests.matrix_graphs:register_prefork"),
        logs / "worker.log",
        concurrency=2,
    )
    server = api_server(storm_backend.settings, logs / "api.log")
    try:
        worker.start()
        server.start()
        yield server, create_key(storm_backend, "storm")
    finally:
        server.stop()
        worker.stop()


def overlapping(intervals: list[tuple[float, float]]) -> int:
    """Pairs of (first, last) tick intervals that overlap."""
    ordered = sorted(intervals)
    return sum(
        1
        for i, (_start, end) in enumerate(ordered)
        for later_start, _ in ordered[i + 1 :]
        if later_start <= end
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_interrupt_storm_leaves_one_success_and_no_overlap(
    kind, storm_backend, storm_server, report, tmp_path
):
    server, key = storm_server
    journal = Journal(tmp_path / "journal.jsonl")
    gaps = random.Random(f"{SEED}-{kind}")
    with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as http:
        thread_id = http.post("/threads", json={}).raise_for_status().json()["thread_id"]
        run_ids = []
        for n in range(CREATES):
            if n:
                time.sleep(gaps.uniform(*GAPS_MS) / 1000)  # the storm's pace, not a wait
            created = http.post(
                f"/threads/{thread_id}/runs",
                json={
                    "assistant_id": assistant_name(kind, "prefork"),
                    "input": {"label": f"storm-{n}", "ticks": TICKS, "journal": str(journal)},
                    "multitask_strategy": "interrupt",
                },
            )
            assert created.status_code == 200, created.text
            run_ids.append(created.json()["run_id"])
        last = http.get(f"/threads/{thread_id}/runs/{run_ids[-1]}/join")
        assert last.status_code == 200, last.text
        statuses = [
            http.get(f"/threads/{thread_id}/runs/{run_id}").json()["status"] for run_id in run_ids
        ]
        state = http.get(f"/threads/{thread_id}/state").json()

    lines = journal.lines(event="tick")
    ticks: dict[str, list[float]] = {}
    for line in lines:
        ticks.setdefault(line["run_id"], []).append(line["monotonic"])
    intervals = [(min(seen), max(seen)) for seen in ticks.values()]
    report(
        f"graph-interrupt-storm-{kind}-{storm_backend.name}",
        runs=CREATES,
        success=statuses.count("success"),
        interrupted=statuses.count("interrupted"),
        executed=len(ticks),
        overlapping=overlapping(intervals),
    )
    assert statuses == ["interrupted"] * (CREATES - 1) + ["success"], statuses
    assert overlapping(intervals) == 0
    assert set(ticks) <= set(run_ids) and len(ticks) >= 2  # the storm did cut nodes short
    assert len(ticks[run_ids[-1]]) == TICKS  # the last run's node worked to its end
    assert state["values"]["label"] == f"storm-{CREATES - 1}"
    assert state["values"]["log"][-2:] == [f"work@{run_ids[-1]}", f"gate@{run_ids[-1]}"]

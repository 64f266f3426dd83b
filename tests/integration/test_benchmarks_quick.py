"""The benchmark suite in quick mode, as a smoke test: it runs, writes its JSON, covers every
scenario on both backends, and what it measured was correct. Times are never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.plan import SCENARIOS
from tests.conftest import require_services
from tests.support import run_quick_benchmark

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_services()
    out = tmp_path_factory.mktemp("bench") / "results.json"
    return run_quick_benchmark("benchmarks", out, "runs/s", "--backend", "all")


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"])
def test_every_scenario_ran_without_error(report: dict, backend: str) -> None:
    results = report["backends"][backend]
    assert set(SCENARIOS) <= set(results)
    failed = {name: results[name]["error"] for name in SCENARIOS if "error" in results[name]}
    assert not failed


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"])
def test_no_run_or_task_was_lost(report: dict, backend: str) -> None:
    throughput = report["backends"][backend]["throughput"]
    assert throughput["lost"] == 0
    for side in ("runqueue", "raw"):
        for repetition in throughput[side]["details"]:
            assert repetition["succeeded"] == repetition["runs"] > 0


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"])
def test_contention_decided_correctly(report: dict, backend: str) -> None:
    contention = report["backends"][backend]["contention"]
    assert contention["creators"] == 50
    for strategy in ("reject", "interrupt", "enqueue"):
        for race in contention[strategy]["details"]:
            assert race["problems"] == [], (strategy, race["problems"])
            assert race["decisions"] == 50
            assert race["max_running_seen"] <= 1
        assert contention[strategy]["correct"]
    reject = contention["reject"]["details"]
    assert all(race["accepted"] == 1 and race["rejected"] == 49 for race in reject)


@pytest.mark.parametrize("backend", ["embedded", "postgres_redis"])
def test_counts_and_readings_are_present(report: dict, backend: str) -> None:
    results = report["backends"][backend]
    creator, worker = results["writes"]["creator"]["create"], results["writes"]["worker"]
    assert creator["round_trips"] >= 1  # the run row at least
    assert worker["round_trips"] >= 2  # claim and final status at least
    if backend == "postgres_redis":  # one function call each: create; claim and finish
        assert creator["statements"] == creator["round_trips"] == 1
        assert worker.get("transactions", 0) <= 0.5, worker  # only the odd heartbeat
    assert results["memory"]["worker_ratio"] > 0 and results["memory"]["creator_ratio"] > 0
    assert results["scale"]["large"]["rows_per_list"] >= 1
    assert results["cancel"]["runqueue_to_dead_all"]["n"] >= 1


def test_stream_benchmark_quick_mode(tmp_path: Path) -> None:
    """`python -m benchmarks.stream --quick`: every figure measured on both backends, every
    reader complete, join faster than the polling it replaced on Redis."""
    require_services()
    out = tmp_path / "stream.json"
    report = run_quick_benchmark("benchmarks.stream", out, "emit->reader p50 ms")
    for backend in ("embedded", "postgres_redis"):
        results = report["backends"][backend]
        many = results["many_readers"]
        assert many["complete_readers"] == many["readers"] > 0
        assert results["latency"]["events"] == results["latency"]["n"] > 0
        assert results["one_reader"]["events"] > 0 and not results["one_reader"]["gap"]
    assert report["backends"]["postgres_redis"]["redis_memory"]["entries_kept"] > 0


def test_graph_benchmark_quick_mode(tmp_path: Path) -> None:
    """`python -m benchmarks.graph --quick`: both sides measured on both backends, for the
    sync graph and its async twin, every graph run through runqueue a success (the script
    checks each)."""
    require_services()
    out = tmp_path / "graph.json"
    report = run_quick_benchmark("benchmarks.graph", out, "overhead per graph run, p50")
    for backend in ("embedded", "postgres_redis"):
        results = report["backends"][backend]
        assert results["runs_per_side"] == 5
        assert results["in_process"]["p50_ms"] > 0 and results["runqueue"]["p50_ms"] > 0
        twin = results["async"]
        assert twin["runs_per_side"] == 5
        assert twin["in_process"]["p99_ms"] >= twin["in_process"]["p50_ms"] > 0
        assert twin["runqueue"]["p99_ms"] >= twin["runqueue"]["p50_ms"] > 0


def test_mixed_fleet_benchmark_quick_mode(tmp_path: Path) -> None:
    """`python -m benchmarks.mixed_fleet --quick`: two workers with disjoint assistants on one
    broker, on both backends: every run started, none discarded as unregistered, none left
    to the relay; raw Celery routed per task beside it."""
    require_services()
    report = run_quick_benchmark("benchmarks.mixed_fleet", tmp_path / "mixed.json", "p99 ms")
    for backend in ("embedded", "postgres_redis"):
        results = report["backends"][backend]
        ours = results["runqueue"]
        assert ours["success"] == ours["runs"] == ours["n"] > 0
        assert ours["unregistered"] == 0 and ours["republished"] == 0
        assert results["raw_celery"]["success"] == results["raw_celery"]["runs"]

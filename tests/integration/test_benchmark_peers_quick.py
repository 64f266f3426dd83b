"""The peers scenario of the benchmark suite in quick mode, as a smoke test: runqueue, raw
Celery (events off and on), Celery with the database result backend and Procrastinate all
measured on PostgreSQL + Redis, no job of any lost, every ratio and target computed, and the
chart drawn. Times are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import peer_report
from benchmarks.peer_report import PEERS
from tests.conftest import require_services
from tests.support import REPO_ROOT, run_quick_benchmark

pytestmark = pytest.mark.integration

SYSTEMS = ("runqueue", *PEERS)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    require_services()
    folder = tmp_path_factory.mktemp("peers")
    report = run_quick_benchmark(
        "benchmarks",
        folder / "results.json",
        "e2e jobs/s serial, vs Procrastinate",
        *("--peers", "--backend", "postgres_redis", "--scenarios", "peers"),
        *("--chart", str(folder / "run.svg")),
        timeout=280,
    )
    return report, folder


def test_every_system_measured_end_to_end_and_nothing_lost(run: tuple[dict, Path]) -> None:
    peers = run[0]["backends"]["postgres_redis"]["peers"]
    assert "error" not in peers, peers.get("traceback")
    assert peers["producer_threads"] == 8
    for shape in ("serial", "threads"):
        assert set(peers["e2e"][shape]) == set(SYSTEMS)
        for name in SYSTEMS:
            figure = peers["e2e"][shape][name]
            assert figure["median"] > 0, (shape, name)
            for repetition in figure["details"]:
                assert repetition["succeeded"] == repetition["jobs"] > 0, (shape, name)
            producers = {repetition["producers"] for repetition in figure["details"]}
            assert producers == {1 if shape == "serial" else 8}
        assert set(peers["ratios"][shape]) == set(PEERS)
        assert all(ratio > 0 for ratio in peers["ratios"][shape].values())
    assert peers["lost"] == 0


def test_submit_latency_connections_and_create_many(run: tuple[dict, Path]) -> None:
    peers = run[0]["backends"]["postgres_redis"]["peers"]
    latency = peers["submit_latency"]
    assert set(latency) == {"runqueue_create", "procrastinate_defer", "celery_apply_async"}
    for figure in latency.values():
        assert figure["p99_ms"]["median"] >= figure["p50_ms"]["median"] > 0
    assert peers["create_vs_defer_p50"] > 0
    assert set(peers["connections"]) == {"8", "64"}
    for threads, counted in peers["connections"].items():
        assert counted["threads"] == int(threads) and counted["creates"] == 100
        assert counted["new_connections"] >= 0 and counted["pg_sessions_delta"] >= 0
    many = peers["create_many"]
    assert many["recorded"] == many["published"] == many["outcomes"] == many["runs"] == 200
    assert many["refused"] == 0 and many["apply_async"]["published"] == 200
    assert many["ratio"] > 0


def test_targets_of_issue_14_are_reported(run: tuple[dict, Path]) -> None:
    targets = {t["target"]: t for t in run[0]["targets"] if t["backend"] == "postgres_redis"}
    labels = [label for label, *_ in peer_report.targets({})]
    assert len(labels) == 9 and set(labels) <= set(targets)
    unmeasured = {label for label in labels if targets[label]["met"] is None}
    if "skipped" in run[0]["backends"]["postgres_redis"]["peers"]["create_many"]:
        assert unmeasured == {"create_many / apply_async"}
    else:
        assert unmeasured == set()


def test_the_chart_is_drawn_by_the_run_and_by_its_command(run: tuple[dict, Path]) -> None:
    report, folder = run
    drawn = (folder / "run.svg").read_text()
    assert drawn.startswith("<?xml") and "<svg" in drawn
    out = folder / "command.svg"
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.chart", str(folder / "results.json"), "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert out.read_text() == drawn  # the same figures, the same file
    assert "Procrastinate" in drawn  # the labels are text in the SVG

"""The HTTP API benchmark in quick mode, as a smoke test: it runs against both servers, writes
its JSON with every figure for both, and what runqueue served was correct. Times are never
asserted."""

from __future__ import annotations

import math

import pytest

from benchmarks.api_report import QUICK, SYSTEMS, metric_names
from tests.conftest import require_services
from tests.support import run_quick_benchmark

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_services()
    out = tmp_path_factory.mktemp("bench-api") / "api.json"
    return run_quick_benchmark("benchmarks.api", out, "runs/s", timeout=240)


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_metric_is_reported(report: dict, system: str) -> None:
    metrics = report["systems"][system]["metrics"]
    missing = [key for key, _label in metric_names(QUICK) if key not in metrics]
    assert not missing
    not_numbers = {
        key: value
        for key, value in metrics.items()
        if not isinstance(value, int | float) or math.isnan(value)
    }
    assert not not_numbers


def test_runqueue_served_every_request(report: dict) -> None:
    """Each create answered 200, each streamed run streamed its graph's values, and every
    join stream was served and still open when the hold ended."""
    details = report["systems"]["runqueue"]["details"]
    for clients in (1, 50, 200):
        phase = details[f"create_c{clients}"]
        assert phase["errors"] == {}
        assert phase["n"] == QUICK.creates[clients]
    assert details["first_event"]["errors"] == {}
    assert details["first_event"]["first_event_names"] == {"values": QUICK.first_events}
    streams = details["streams"]
    assert streams["served"] == streams["open_at_end"] == QUICK.streams


def test_targets_are_judged(report: dict) -> None:
    assert set(report["targets"]) == {"runs_per_s_at_50_ratio", "p99_at_200_ms"}
    assert all(isinstance(target["met"], bool) for target in report["targets"].values())

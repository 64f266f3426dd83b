"""Summaries of repeated measurements: medians, percentiles, and a noise flag."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NOISY_SPREAD = 0.2  # (p90 - p10) / median above this marks a figure as noisy


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> float:
    """(p90 - p10) / median: 0 for one value, large when repetitions disagree."""
    median = percentile(values, 50)
    if len(values) < 2 or not median:
        return 0.0
    return (percentile(values, 90) - percentile(values, 10)) / median


def latency_summary(samples: Sequence[float]) -> dict[str, Any]:
    """One repetition's latencies (seconds) -> p50/p99 in milliseconds."""
    return {
        "n": len(samples),
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000 if samples else math.nan,
    }


def over_repetitions(values: Sequence[float]) -> dict[str, Any]:
    """One figure measured once per repetition -> its median, spread and noise flag."""
    values = list(values)
    figure_spread = spread(values)
    return {
        "median": percentile(values, 50),
        "repetitions": values,
        "spread": figure_spread,
        "noisy": figure_spread > NOISY_SPREAD,
    }


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def figure_at(results: dict[str, Any], *path: str) -> float:
    """The number at `path` in a results dict; NaN if any key is missing or it is no number."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return float(value) if isinstance(value, int | float) else math.nan

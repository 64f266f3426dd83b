"""The peers' throughput as a grouped bar chart: end-to-end no-op jobs/s of each system, with
one producer and with several producer threads, from the JSON `python -m benchmarks` wrote.

python -m benchmarks.chart [results.json] [--out docs/benchmarks-throughput.svg]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results.json"
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks-throughput.svg"
COLORS = {"serial": "#4c72b0", "threads": "#dd8452"}


class ChartError(Exception):
    """The results hold no peers figures to draw."""


def peers_of(report: dict[str, Any]) -> dict[str, Any]:
    peers = report.get("backends", {}).get("postgres_redis", {}).get("peers", {})
    if "e2e" not in peers:
        reason = peers.get("skipped") or peers.get("error") or "no peers scenario in the results"
        raise ChartError(f"no peers figures to draw: {reason}")
    return peers


def draw(report: dict[str, Any], out: Path) -> Path:
    """Write the chart (its format from the suffix, SVG by default); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = peers_of(report)
    systems: dict[str, str] = peers["systems"]
    shapes = {"serial": "1 producer", "threads": f"{peers['producer_threads']} producer threads"}
    plt.rcParams["svg.hashsalt"] = "runqueue-benchmarks"  # the same figures, the same file
    figure, axes = plt.subplots(figsize=(9, 4.8), layout="constrained")
    width = 0.38
    for offset, (shape, label) in enumerate(shapes.items()):
        medians = [peers["e2e"][shape][name]["median"] for name in systems]
        positions = [index + (offset - 0.5) * width for index in range(len(systems))]
        bars = axes.bar(positions, medians, width, label=label, color=COLORS[shape])
        axes.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    axes.set_xticks(range(len(systems)), list(systems.values()), fontsize=9)
    axes.set_ylabel("no-op jobs/s, end to end (median)")
    machine = report.get("machine", {})
    axes.set_title(
        f"PostgreSQL + Redis, {report.get('concurrency', '?')} execution slots, "
        f"{machine.get('nproc', '?')} CPUs ({report.get('mode', '?')} run, "
        f"commit {machine.get('git_commit', '?')})",
        fontsize=10,
    )
    axes.legend(frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format=out.suffix.lstrip(".") or "svg", metadata={"Date": None})
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chart", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", type=Path, nargs="?", default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        path = draw(json.loads(args.results.read_text()), args.out)
    except (OSError, ValueError, ChartError) as exc:
        print(f"python -m benchmarks.chart: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

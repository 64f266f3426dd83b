"""Loads the peers get alike: N no-op jobs submitted by one producer or by several threads,
timed from the first submit until the system's own store shows every job done; and single
submits, one at a time, for their latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from benchmarks.harness import wait_for
from benchmarks.stats import latency_summary, over_repetitions

PAUSE = 0.005  # between single submits: each measures an idle system, not a queue


class Batch(Protocol):
    """One timed load of a system: submit jobs, then read how many its store shows done."""

    def submit(self, index: int) -> None: ...

    def finished(self) -> int:
        """Jobs of this batch in a final state (the figure the clock waits for)."""
        ...

    def succeeded(self) -> int:
        """Jobs of this batch that succeeded (the figure `lost` is computed from)."""
        ...


@dataclass
class Peer:
    """A system under test: how to start a batch of it, and how to submit one job alone."""

    name: str  # the JSON key
    label: str  # the table's and the chart's name
    batch: Callable[[], Batch]
    submit_one: Callable[[], Any] | None = None  # for the submit latency, if measured


def produce(batch: Batch, jobs: int, producers: int) -> float:
    """Submit `jobs` jobs, each producer thread its share; returns when the first submit
    began (perf_counter). Threads start together on a barrier."""
    if producers == 1:
        started = time.perf_counter()
        for index in range(jobs):
            batch.submit(index)
        return started
    barrier = threading.Barrier(producers + 1)
    errors: list[BaseException] = []

    def producer(offset: int) -> None:
        barrier.wait()
        try:
            for index in range(offset, jobs, producers):
                batch.submit(index)
        except BaseException as error:  # noqa: BLE001 - raised in the caller below
            errors.append(error)

    threads = [
        threading.Thread(target=producer, args=(offset,), name=f"producer-{offset}")
        for offset in range(producers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return started


def once(peer: Peer, jobs: int, producers: int) -> dict[str, Any]:
    """One end-to-end repetition: from the first submit until all `jobs` are done."""
    batch = peer.batch()
    started = produce(batch, jobs, producers)
    submitted = time.perf_counter()
    wait_for(
        lambda: batch.finished() >= jobs,
        timeout=60 + jobs / 5,
        interval=0.02,
        what=f"{jobs} {peer.name} jobs to finish",
    )
    elapsed = time.perf_counter() - started
    succeeded = batch.succeeded()
    return {
        "jobs": jobs,
        "producers": producers,
        "seconds": elapsed,
        "submit_seconds": submitted - started,
        "per_second": jobs / elapsed,
        "succeeded": succeeded,
        "lost": jobs - succeeded,
    }


def submit_latencies(peer: Peer, samples: int) -> list[float]:
    """`samples` single submits, one at a time (seconds each)."""
    assert peer.submit_one is not None, peer.name
    latencies = []
    for _ in range(samples):
        before = time.perf_counter()
        peer.submit_one()
        latencies.append(time.perf_counter() - before)
        time.sleep(PAUSE)
    return latencies


def latency_figures(repetitions: list[list[float]]) -> dict[str, Any]:
    """p50 and p99 of each repetition -> their medians over repetitions."""
    summaries = [latency_summary(samples) for samples in repetitions]
    return {
        "samples_per_repetition": len(repetitions[0]),
        "p50_ms": over_repetitions([summary["p50_ms"] for summary in summaries]),
        "p99_ms": over_repetitions([summary["p99_ms"] for summary in summaries]),
    }

"""Clock skew: a worker whose clock is 60 s behind, or 60 s ahead, beside a normal one.

Leases, the reaper's comparison and the maintenance lock all use the database's clock, so the
skewed worker's runs, longer than a lease, are not reaped while they run (nor are the normal
worker's by the skewed reaper), and once it is SIGKILLed its run is final within lease + 5 s.
The skew is libfaketime's (Debian's `faketime`), preloaded into the worker and its pool
children; their monotonic clock stays real (FAKETIME_DONT_FAKE_MONOTONIC), and skewed_clock/
works around libfaketime 0.9.10's broken time.sleep() there (see its sitecustomize.py).
"""

from __future__ import annotations

import glob
import os
import time
import uuid
from pathlib import Path

import pytest

from runqueue import RunRecord, RunStatus, SyncRunManager
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import REPO_ROOT, RunFactory

SKEW = 60  # seconds
STEPS, DELAY = 36, 0.25  # a run of about 9 s: more than twice the fault suite's 4 s lease
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
SLEEP_SHIM = Path(__file__).parent / "skewed_clock"  # its sitecustomize.py


def skewed_clock(seconds: int) -> dict[str, str]:
    """The environment that runs a worker (and its forked children) `seconds` off."""
    assert LIBFAKETIME, "libfaketime is missing: .ci/run installs the faketime package"
    return {
        "LD_PRELOAD": LIBFAKETIME[0],
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join([str(SLEEP_SHIM), str(REPO_ROOT)]),
    }


def _long_runs(
    factory: RunFactory, workers: dict[str, object]
) -> tuple[dict[str, RunRecord], dict[str, float]]:
    """One long run per worker (concurrency 1, prefetch 1: each takes one): which worker
    executes which run, by the pid its assistant journalled, and how far that process's
    clock is from this one's (its journalled start against when the start was seen here)."""
    runs = [factory(f"skew-{uuid.uuid4().hex[:10]}", steps=STEPS, delay=DELAY) for _ in workers]
    seen: dict[str, tuple[float, dict]] = {}  # run id -> (seen here at, its first line)

    def started() -> bool:
        for run in runs:
            if run.run_id not in seen and (start := factory.journal.first(run.run_id)):
                seen[run.run_id] = (time.time(), start)
        return len(seen) == len(runs)

    faultkit.wait_for(started, timeout=30, message="both long runs started")
    placed, offsets = {}, {}
    for run in runs:
        seen_at, start = seen[run.run_id]
        (name,) = [name for name, w in workers.items() if start["pid"] in w.pool_pids()]
        placed[name] = run
        offsets[name] = start["time"] - seen_at  # less the 50 ms poll, at most
    assert placed.keys() == workers.keys(), "each worker executes one of the runs"
    return placed, offsets


def _reaped(manager: SyncRunManager, run: RunRecord) -> bool:
    return any("lease expired" in (event.detail or "") for event in manager.events(run.run_id))


@pytest.mark.parametrize("skew", [-SKEW, SKEW], ids=["behind", "ahead"])
def test_a_worker_with_a_skewed_clock(shared_backend, workers, report, tmp_path, skew):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (skewed,) = workers(settings, concurrency=1, name="skewed", extra_env=skewed_clock(skew))
    (normal,) = workers(settings, concurrency=1, name="normal")
    fleet = {"skewed": skewed, "normal": normal}

    # 1. Runs longer than two leases, one on each worker: neither is reaped while it runs.
    first, offsets = _long_runs(factory, fleet)
    # Both workers really run on the clocks intended.
    assert abs(offsets["skewed"] - skew) < 2.0, offsets
    assert abs(offsets["normal"]) < 2.0, offsets
    done = {name: manager.join(run.run_id, timeout=60) for name, run in first.items()}
    for name, run in done.items():
        assert run.status is RunStatus.success, f"{name} worker's run: {run.status} {run.error}"
        assert run.result == {"steps": STEPS} and not _reaped(manager, run)
    durations = [r.ended_at.timestamp() - r.started_at.timestamp() for r in done.values()]
    assert min(durations) > 2 * settings.lease_seconds

    # 2. The skewed worker dies mid-run (main process and child): its run is freed on time.
    second, _ = _long_runs(factory, fleet)
    faultkit.wait_for(
        lambda: journal.count(run_id=second["skewed"].run_id, event="step") > 0,
        timeout=30,
        message="the skewed worker's run stepping",
    )
    following = factory(second["skewed"].thread_id, steps=1, delay=0.05, strategy="enqueue")
    killed_at = time.time()
    faultkit.kill_process_tree(skewed)
    bound = settings.lease_seconds + 5
    try:
        lost = manager.join(second["skewed"].run_id, timeout=bound + 10)
    except TimeoutError:
        pytest.fail(f"the killed worker's run still held {bound + 10:.0f} s after the kill")
    free_after = lost.ended_at.timestamp() - killed_at
    survivor = manager.join(second["normal"].run_id, timeout=60)
    next_run = manager.join(following.run_id, timeout=30)

    report(
        f"clock-skew-{'behind' if skew < 0 else 'ahead'}",
        skew_s=offsets["skewed"],
        runs=5,
        run_s=min(durations),
        lease_s=settings.lease_seconds,
        reaped_while_running=sum(_reaped(manager, r) for r in [*first.values(), second["normal"]]),
        free_after_s=free_after,
        overlapping=journal.overlapping(),
        duplicated=journal.duplicated(),
    )
    assert lost.status is RunStatus.error and "worker lost" in lost.error
    assert free_after <= bound
    assert survivor.status is RunStatus.success and not _reaped(manager, second["normal"])
    assert next_run.status is RunStatus.success
    assert journal.overlapping() == 0
    assert journal.duplicated() == 0

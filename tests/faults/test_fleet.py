"""A fleet of three workers under mixed load, and a run for an assistant no worker serves.

300 runs over 30 threads with every strategy: each thread runs one run at a time, enqueued
runs start in creation order, every worker takes runs, and `runqueue workers` lists the
fleet as it changes. A run of an assistant the workers lack says why it does not start.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from runqueue import ConflictError, RunStatus
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import REPO_ROOT, RunFactory, as_process, settings_env

THREADS, RUNS_PER_THREAD = 30, 10
# Per thread, in creation order (rotated by the thread's index): mostly enqueue, with a
# reject, an interrupt and a rollback among them.
PATTERN = [
    "enqueue",
    "enqueue",
    "reject",
    "enqueue",
    "interrupt",
    "enqueue",
    "enqueue",
    "rollback",
    "enqueue",
    "enqueue",
]


def _fleet(settings) -> dict[str, int]:  # noqa: ANN001
    """`runqueue workers --json`, as an operator runs it: the live workers' names and pids."""
    finished = subprocess.run(
        as_process(["runqueue", "workers", "--json"]),
        env=settings_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    return {worker["name"]: worker["pid"] for worker in json.loads(finished.stdout)}


def test_three_workers_share_300_runs_and_the_fleet_is_listed(
    shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    fleet = workers(settings, count=3, concurrency=2)  # named worker-<hex>@host each
    names = _fleet(settings)
    assert sorted(names.values()) == sorted(worker.pid for worker in fleet)
    assert len({name.split("@")[0] for name in names}) == 3

    factory = RunFactory(manager, journal)
    rejected = 0
    started_at = faultkit.monotonic()
    threads = [f"fleet-{index}-{uuid.uuid4().hex[:6]}" for index in range(THREADS)]
    created: dict[str, list[str]] = {thread_id: [] for thread_id in threads}
    for n in range(RUNS_PER_THREAD):  # round by round: a thread's runs come over time
        for index, thread_id in enumerate(threads):
            strategy = PATTERN[(n + index) % len(PATTERN)]
            try:
                run = factory(thread_id, strategy=strategy, steps=3, delay=0.05)
            except ConflictError:
                rejected += 1
                continue
            created[thread_id].append(run.run_id)
    runs = [manager.join(run_id, timeout=120) for ids in created.values() for run_id in ids]
    elapsed = faultkit.monotonic() - started_at

    statuses = Counter(run.status.value for run in runs)
    by_worker = Counter(run.worker.split("@")[0] for run in runs if run.worker)
    report(
        "fleet-300",
        runs=len(runs) + rejected,
        rejected=rejected,
        success=statuses["success"],
        interrupted=statuses["interrupted"],
        overlapping=journal.overlapping(),
        workers=len(by_worker),
        elapsed_s=elapsed,
    )
    assert len(runs) + rejected == THREADS * RUNS_PER_THREAD
    assert set(statuses) <= {"success", "interrupted"}, statuses
    assert statuses["success"] > 0 and statuses["interrupted"] > 0
    assert journal.overlapping() == 0
    assert journal.duplicated() == 0
    for thread_id, ids in created.items():
        order = {run_id: n for n, run_id in enumerate(ids)}
        starts = [line["run_id"] for line in journal.lines(thread_id=thread_id, event="start")]
        assert starts == sorted(starts, key=order.__getitem__), "started out of creation order"
    assert len(by_worker) == 3, by_worker  # every worker took runs

    stopped = fleet[0]
    stopped.kill(signal.SIGTERM)
    assert stopped.process.wait(30) == 0
    remaining = _fleet(settings)
    assert sorted(remaining.values()) == sorted(worker.pid for worker in fleet[1:])


def test_a_run_no_worker_serves_says_why(shared_backend, workers, caplog, tmp_path):
    """The workers run the example app (workers.app), which lacks the fault app's `flaky`.
    The run goes to flaky's own queue, which that worker does not consume: it never receives
    (and discards) the run, which waits, saying why. A worker that serves it, started later,
    takes it from its queue at once (no republish needed)."""
    settings = shared_backend.settings.with_overrides(republish_after=3600.0)
    workers(settings.with_overrides(app="workers.app:app"), concurrency=1, name="plain")
    manager = faultkit.manager_for(settings)
    thread_id = f"unserved-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.WARNING, logger="runqueue.registry"):
        run = manager.create_or_reject(thread_id, "flaky", kwargs={"fail_attempts": 0})
    warnings = [r.getMessage() for r in caplog.records if r.name == "runqueue.registry"]
    assert len(warnings) == 1 and "no live worker serves assistant 'flaky'" in warnings[0]

    # The plain worker is consuming: a run it serves, created after, is done.
    served = manager.create_or_reject(f"served-{uuid.uuid4().hex[:8]}", "echo")
    assert manager.join(served.run_id, timeout=30).status is RunStatus.success
    assert manager.why_pending(served.run_id) is None
    assert manager.get(run.run_id).status is RunStatus.pending
    assert not [e for e in manager.events(run.run_id) if "does not serve" in (e.detail or "")]
    why = manager.why_pending(run.run_id)
    assert why.startswith("no live worker serves assistant flaky (live workers: plain-")

    workers(settings, concurrency=1, name="serving")
    done = manager.join(run.run_id, timeout=30)
    assert done.status is RunStatus.success and done.worker.startswith("serving-")
    with manager.store.transaction() as conn:  # published once: the relay (an hour away) was
        # not needed
        assert (
            conn.execute(
                text("SELECT publish_count FROM runs WHERE run_id = :id"), {"id": run.run_id}
            ).scalar()
            == 0
        )


@pytest.fixture(autouse=True)
def _quiet_kombu(caplog):  # noqa: ANN001, ANN202
    caplog.set_level(logging.ERROR, logger="kombu")

"""Crashes: a worker host dies (main process and children), or one pool child is killed.

Either way the run reaches a final status within lease + 5 s and the thread's next enqueued
run starts, after the killed one stopped writing (the journal proves no overlap).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from runqueue import RunRecord, RunStatus
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import RunFactory, settings_env


def _thread() -> str:
    return f"crash-{uuid.uuid4().hex[:10]}"


def _long_then_next(run_factory: RunFactory) -> tuple[RunRecord, RunRecord]:
    thread_id = _thread()
    long = run_factory(thread_id, steps=60, delay=0.25)
    following = run_factory(thread_id, steps=1, delay=0.05, strategy="enqueue")
    faultkit.wait_for(
        lambda: run_factory.journal.count(run_id=long.run_id, event="step") > 0,
        timeout=30,
        message="the long run's first step",
    )
    return long, following


def test_sigkill_worker_main_process_and_children(shared_backend, workers, report, tmp_path):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    first, second = workers(settings, count=2, concurrency=1)
    long, following = _long_then_next(RunFactory(manager, journal))
    pid = journal.pid(long.run_id)
    victim = first if pid in first.pool_pids() else second
    assert pid in victim.pool_pids()

    killed_at = time.time()
    faultkit.kill_process_tree(victim)

    bound = settings.lease_seconds + 5
    ended = manager.join(long.run_id, timeout=bound + 2)
    next_run = manager.join(following.run_id, timeout=30)
    free_after = ended.ended_at.timestamp() - killed_at
    report(
        "sigkill-main",
        runs=2,
        lost=sum(not r.is_final for r in (ended, next_run)),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        free_after_s=free_after,
    )
    assert ended.status is RunStatus.error and "worker lost" in ended.error
    assert free_after <= bound
    assert next_run.status is RunStatus.success
    assert journal.starts() == {long.run_id: 1, following.run_id: 1}
    assert journal.overlapping() == 0
    # The killed run's steps stopped with its process: it never ran on after the kill.
    assert journal.intervals()[long.run_id][1] < killed_at + 0.5


def test_sigkill_one_pool_child(shared_backend, workers, report, tmp_path):
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=2)
    long, following = _long_then_next(RunFactory(manager, journal))
    pid = journal.pid(long.run_id)
    assert pid in worker.pool_pids()

    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)

    bound = settings.lease_seconds + 5
    ended = manager.join(long.run_id, timeout=bound + 2)
    next_run = manager.join(following.run_id, timeout=30)
    free_after = ended.ended_at.timestamp() - killed_at
    # Which path wrote the end: Celery's main process (WorkerLostError, which billiard only
    # declares after its lost_worker_timeout of 10 s) or the lease reaper (lease 4 s here).
    path = "reaper" if "lease expired" in ended.error else "main-process"
    report(
        "sigkill-child",
        runs=2,
        lost=sum(not r.is_final for r in (ended, next_run)),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        free_after_s=free_after,
        finalized_by=path,
    )
    assert ended.status is RunStatus.error and "worker lost" in ended.error
    assert free_after <= bound
    assert next_run.status is RunStatus.success
    assert journal.starts() == {long.run_id: 1, following.run_id: 1}
    assert journal.overlapping() == 0
    assert worker.process.poll() is None  # the worker itself lives on


def test_reap_command_frees_a_thread_whose_worker_vanished(shared_backend):
    """`runqueue reap`, as cron would run it: a run claimed by a process that then died (it
    never renews its lease) ends as error "worker lost"; the thread's next run is queued."""
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    thread_id = _thread()
    crashed = manager.create_or_reject(thread_id, "echo")
    waiting = manager.create_or_reject(thread_id, "echo", multitask_strategy="enqueue")
    claim = manager.store.claim_run(crashed.run_id, "vanished@host", str(uuid.uuid4()), 0.5)
    assert claim.claimed
    time.sleep(0.6)

    env = settings_env(settings)
    done = subprocess.run(
        [sys.executable, "-m", "runqueue", "reap"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["reaped"] == 1
    run = manager.get(crashed.run_id)
    assert run.status is RunStatus.error and run.error == "worker lost: lease expired"
    # Released in the same transaction, and published (nothing consumes this queue here).
    with manager.store.transaction() as conn:
        state = conn.exec_driver_sql(
            "SELECT dispatch_state, dispatched_at IS NOT NULL FROM runs WHERE run_id = %s",
            (waiting.run_id,),
        ).one()
    assert tuple(state) == ("queued", True)

"""Poison runs: a run that takes its worker process down must not take the fleet down with it.

Three workers serve a steady load of ordinary runs while poison runs arrive: kwargs nested
too deep to hand to a pool process (written as an older release let them in), a task whose
process dies before its claim, and assistants that exit or segfault. In a prefork pool each
poison run ends `error` with its reason after a bounded number of deliveries, no worker's
main process exits, and the relay never publishes it again; in a threads pool, where a
crash takes the whole worker, the test replaces every worker that died, and the run's
retry policy (10 attempts) is cut short by Settings.max_worker_losses (3).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runqueue import RunStatus, SyncRunManager
from runqueue.celery.dispatch import publish
from runqueue.store.effects import NewRun
from runqueue.validation import new_run_id
from tests.conftest import require_services
from tests.faults import faultkit
from tests.faults.conftest import FAULT_SETTINGS
from tests.support import Backend, WorkerProcess, make_backend

# A delivery lost before its claim is published again this soon.
POISON_SETTINGS = {**FAULT_SETTINGS, "republish_after": 1.0}
QUIET_SECONDS = 4.0  # after a poison run ends: the relay must publish it no more


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    require_services()
    backend = make_backend("postgres_redis", tmp_path, **POISON_SETTINGS)
    yield backend
    backend.close()


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(eq=False)  # a Thread must stay hashable
class SteadyLoad(threading.Thread):
    """Ordinary runs on threads of their own, one after another, each joined: what the rest
    of the fleet's users keep doing while poison runs arrive."""

    manager: SyncRunManager
    statuses: list[RunStatus] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(name="steady-load", daemon=True)

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            run = self.manager.create_or_reject(f"load-{uuid.uuid4().hex[:8]}", "echo")
            self.statuses.append(self.manager.join(run.run_id, timeout=60).status)
            self.waits.append(time.monotonic() - started)
            time.sleep(0.1)

    def finish(self) -> SteadyLoad:
        self.stopped.set()
        self.join(90)
        return self


@dataclass
class Fleet:
    """Workers the test keeps at `size`: one whose process exited is replaced at once."""

    settings: Any
    log_dir: Path
    size: int
    options: dict[str, Any]
    workers: list[WorkerProcess] = field(default_factory=list)
    died: int = 0
    main_pids: set[int] = field(default_factory=set)

    def start(self) -> Fleet:
        self.workers = faultkit.start_workers(
            self.settings, self.log_dir, self.size, **self.options
        )
        self.main_pids = {worker.pid for worker in self.workers}
        return self

    def replace_dead(self) -> None:
        for index, worker in enumerate(self.workers):
            if worker.process is not None and worker.process.poll() is not None:
                self.died += 1
                log = self.log_dir / f"replacement-{self.died}.log"
                self.workers[index] = WorkerProcess(self.settings, log, **self.options).start()

    def check_alive(self) -> None:
        for worker in self.workers:
            worker.check_alive()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def poison_history(manager: SyncRunManager, run_id: str) -> tuple[Any, ...]:
    """What the relay and the workers would change, were the run published again."""
    run = manager.get(run_id)
    with manager.store.transaction() as conn:
        published = conn.exec_driver_sql(
            "SELECT publish_count, dispatched_at FROM runs WHERE run_id = %(id)s",
            {"id": run_id},
        ).one()
    return (run.status, run.attempt, run.worker_losses, tuple(published),
            len(manager.events(run_id)))  # fmt: skip


def published_again(manager: SyncRunManager, run_ids: list[str], fleet: Fleet) -> list[str]:
    """The ended runs that the relay or a worker touched again within QUIET_SECONDS."""
    seen = {run_id: poison_history(manager, run_id) for run_id in run_ids}
    time.sleep(QUIET_SECONDS)
    fleet.replace_dead()
    return [run_id for run_id in run_ids if poison_history(manager, run_id) != seen[run_id]]


def wait_final(manager: SyncRunManager, run_id: str, timeout: float, keep: Callable[[], None]):  # noqa: ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keep()
        run = manager.get(run_id)
        if run.is_final:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {manager.get(run_id).status} after {timeout}s")


def test_poison_runs_end_alone_in_a_prefork_fleet(backend, tmp_path, report):
    manager = faultkit.manager_for(backend.settings)
    fleet = Fleet(backend.settings, tmp_path, 3, dict(concurrency=2)).start()
    load = SteadyLoad(manager)
    load.start()
    try:
        # An older release let these kwargs in; the store writes what it is given.
        deep = NewRun(
            run_id=new_run_id(), thread_id="poison-deep", assistant_id="echo", user_id=None,
            multitask_strategy=None, on_disconnect="continue", metadata={},
            kwargs={"x": nested(600)}, follow_up_to_run_id=None,
        )  # fmt: skip
        deep_run, _ = manager.store.create_run(deep, check_strategy=False)
        assert publish(manager.app, manager.runtime, deep_run)
        poison = {
            "deep kwargs": deep_run.run_id,
            "dies before claim": manager.create_or_reject("poison-claim", "dies_before_claim"),
            "exits": manager.create_or_reject("poison-exit", "crasher", kwargs={"how": "exit"}),
            "segfaults": manager.create_or_reject(
                "poison-segv", "crasher", kwargs={"how": "segfault"}
            ),
        }
        poison = {k: v if isinstance(v, str) else v.run_id for k, v in poison.items()}
        ended = {
            kind: wait_final(manager, run_id, 60, fleet.replace_dead)
            for kind, run_id in poison.items()
        }
        republished = published_again(manager, list(poison.values()), fleet)
        load.finish()
        fleet.check_alive()
    finally:
        load.stopped.set()
        fleet.stop()
    assert {kind: run.status for kind, run in ended.items()} == dict.fromkeys(
        poison, RunStatus.error
    )
    assert "could not be handed to a pool process" in ended["deep kwargs"].error
    assert ended["deep kwargs"].attempt == 0  # it never reached a pool process
    claim = ended["dies before claim"]
    assert "dead-lettered" in claim.error and claim.worker_losses == 3 and claim.attempt == 0
    for kind in ("exits", "segfaults"):
        assert ended[kind].error.startswith("worker lost"), ended[kind].error
    assert republished == []
    assert fleet.died == 0 and {w.pid for w in fleet.workers} == fleet.main_pids
    assert load.statuses and set(load.statuses) == {RunStatus.success}
    report(
        "poison-prefork",
        poison_runs=len(poison),
        ended_error=len(ended),
        worker_exits=fleet.died,
        lost_before_claim=claim.worker_losses,
        normal_runs=len(load.statuses),
        normal_failed=sum(s is not RunStatus.success for s in load.statuses),
        normal_wait_max_s=max(load.waits),
    )


def test_a_run_that_takes_its_whole_worker_down_is_stopped_at_the_bound(backend, tmp_path, report):
    """A threads pool runs assistants in the worker's own process: each attempt of this
    run kills a whole worker. Its policy allows 10 attempts; the reaper re-queues it twice
    (losses 1 and 2) and ends it at the third loss."""
    manager = faultkit.manager_for(backend.settings)
    fleet = Fleet(backend.settings, tmp_path, 3, dict(concurrency=1, pool="threads")).start()
    load = SteadyLoad(manager)
    load.start()
    try:
        run = manager.create_or_reject("poison-worker", "crasher_retried", kwargs={"how": "exit"})
        ended = wait_final(manager, run.run_id, 90, fleet.replace_dead)
        republished = published_again(manager, [run.run_id], fleet)
        load.finish()
        fleet.check_alive()
    finally:
        load.stopped.set()
        fleet.stop()
    assert ended.status is RunStatus.error
    assert "dead-lettered" in ended.error and "3 times" in ended.error, ended.error
    assert ended.attempt == 3 and ended.worker_losses == 2  # the third loss ended it
    assert fleet.died == 3  # one worker per attempt, each replaced by the test
    assert republished == []
    assert load.statuses and set(load.statuses) == {RunStatus.success}
    report(
        "poison-threads-pool",
        attempts=ended.attempt,
        policy_attempts=10,
        workers_died=fleet.died,
        workers_replaced=fleet.died,
        normal_runs=len(load.statuses),
        normal_failed=sum(s is not RunStatus.success for s in load.statuses),
        normal_wait_max_s=max(load.waits),
    )

"""SIGKILL of a worker while sync, async and mixed graphs (tests/matrix_graphs.py) are
mid-node, on a prefork and on a threads-pool worker: the reaper ends (or retries) every run
within the lease plus a margin, the killed nodes never tick again, and each thread's next
run executes after its killed run's last tick.

The worker dies as a host would: its main process and its pool children at once (SIGKILL to
its process group; a threads-pool worker is one process). A prefork child whose main
process alone died would go on renewing its run's lease: that is a different fault."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from tests.conftest import BACKENDS, require_services
from tests.faults import faultkit
from tests.faults.conftest import FAULT_SETTINGS
from tests.matrix_graphs import KINDS, assistant_name
from tests.support import Backend, make_backend

LONG_TICKS = 3000  # 30 s of work: never done before the kill


@pytest.fixture(params=BACKENDS)
def matrix_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of each kind, with the fault suite's short leases, serving the
    matrix's graphs."""
    if request.param != "embedded":
        require_services()
    backend = make_backend(
        request.param, tmp_path, **FAULT_SETTINGS, imports="tests.matrix_graphs:register"
    )
    yield backend
    backend.close()


def all_ticking(manager, journal: Journal, runs: dict) -> bool:  # noqa: ANN001
    """Every run's node has ticked 5 times; a run that ended before is a failure at once."""
    for kind, run in runs.items():
        if journal.count(run_id=run.run_id, event="tick") < 5:
            record = manager.get(run.run_id)
            assert not record.is_final, (kind, record.status, record.error)
            return False
    return True


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigkill_of_the_worker_mid_node(pool, matrix_backend, workers, report, tmp_path):
    settings = matrix_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    served = settings.with_overrides(imports=f"tests.matrix_graphs:register_{pool}")
    (victim,) = workers(served, concurrency=len(KINDS), pool=pool)

    runs, following = {}, {}
    for kind in KINDS:
        thread_id = f"graph-kill-{kind}-{uuid.uuid4().hex[:8]}"
        graph = assistant_name(kind, pool)
        long_input = {"label": "killed", "ticks": LONG_TICKS, "journal": str(journal)}
        runs[kind] = manager.create(thread_id, graph, kwargs={"input": long_input})
        following[kind] = manager.create_or_reject(
            thread_id,
            graph,
            kwargs={"input": {"label": "next", "ticks": 3, "journal": str(journal)}},
            multitask_strategy="enqueue",
        )
    faultkit.wait_for(lambda: all_ticking(manager, journal, runs), 30, "every work node to tick")
    killed_pids = {
        journal.lines(run_id=run.run_id, event="tick")[0]["pid"] for run in runs.values()
    }
    killed_at = time.time()
    faultkit.kill_process_tree(victim)
    faultkit.wait_for(
        lambda: not victim.pool_pids() and victim.process.poll() is not None,
        10,
        "the victim to die",
    )
    # Confirmed dead from here on: a tick stamped between the kill above and its delivery (a
    # node ticks every 10 ms, on the other core) is no tick after the kill.
    dead_at = time.time()

    # A second worker of the same pool: it reaps the lost runs and runs the next ones.
    workers(served, concurrency=len(KINDS), pool=pool)
    bound = settings.lease_seconds + 10
    ended = {kind: manager.join(run.run_id, timeout=bound + 30) for kind, run in runs.items()}
    nexts = {kind: manager.join(run.run_id, timeout=60) for kind, run in following.items()}
    free_after = max(run.ended_at.timestamp() for run in ended.values()) - killed_at
    overlapping = 0
    for kind in KINDS:
        killed_ticks = journal.lines(run_id=runs[kind].run_id, event="tick")
        next_ticks = journal.lines(run_id=following[kind].run_id, event="tick")
        if next_ticks and killed_ticks:
            overlapping += min(t["time"] for t in next_ticks) <= max(
                t["time"] for t in killed_ticks
            )
    report(
        f"graph-sigkill-{pool}-{matrix_backend.name}",
        runs=2 * len(KINDS),
        lost=sum(not run.is_final for run in [*ended.values(), *nexts.values()]),
        overlapping=overlapping,
        free_after_s=free_after,
    )
    for kind in KINDS:
        run = ended[kind]
        # Ended by the reaper, or retried and finished by the second worker.
        if run.status is RunStatus.error:
            assert "worker lost" in run.error or "lease expired" in run.error, (kind, run.error)
        else:
            assert run.status is RunStatus.success, (kind, run.status, run.error)
            assert run.attempt > 1
        ticks = journal.lines(run_id=runs[kind].run_id, event="tick")
        # No killed process ticked once it was dead: no orphan of it went on (a retried
        # attempt runs in another pid).
        assert all(t["time"] < dead_at for t in ticks if t["pid"] in killed_pids), kind
        assert nexts[kind].status is RunStatus.success, (kind, nexts[kind].error)
        assert manager.state(runs[kind].thread_id).values["label"] == "next"
    assert free_after <= bound
    assert overlapping == 0

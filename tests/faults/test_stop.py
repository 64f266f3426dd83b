"""An embedded worker (SQLite + the filesystem broker) stops promptly, whichever way SIGTERM
reaches it: to its main process alone (docker stop, Kubernetes), or to its whole process group
(systemd's KillMode=control-group, `kill -TERM -PGID`).

It took 7 s idle, waiting out the broker's 2 s polls twice and the pool's threads' sleeps;
and a SIGTERM to the group could hang it until SIGKILL (a pool child killed while it waited
for a job kept the pool's queue lock, which the pool waits for at exit).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from runqueue import RunStatus
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.faults.conftest import FAULT_SETTINGS
from tests.support import RunFactory, make_backend, pid_alive

# Measured: 0.4-0.9 s to the group, 1.4 s to the main process (it was 7 s, and 20 s until
# SIGKILL); the margin is for a loaded machine.
STOP_BOUND_SECONDS = 4.0


@pytest.fixture
def embedded_settings(tmp_path):  # noqa: ANN001, ANN201
    backend = make_backend("embedded", tmp_path, **FAULT_SETTINGS)
    yield backend.settings
    backend.close()


def _stopped_in(worker, to_group: bool) -> float:  # noqa: ANN001
    """SIGTERM the worker (its group, or its main process), then wait until every process
    of the group has exited; the seconds it took, or a failure past the bound."""
    group = [worker.pid, *worker.pool_pids()]
    assert len(group) >= 2, "no pool children to stop"
    sent_at = time.monotonic()
    if to_group:
        os.killpg(worker.pid, signal.SIGTERM)
    else:
        os.kill(worker.pid, signal.SIGTERM)
    faultkit.wait_for(
        lambda: not any(pid_alive(pid) for pid in group),
        timeout=STOP_BOUND_SECONDS,
        message=f"the worker's processes {group} to exit after SIGTERM",
    )
    elapsed = time.monotonic() - sent_at
    assert worker.process.wait(5) == 0
    return elapsed


def test_a_worker_that_ran_a_run_stops_promptly_on_sigterm_to_its_process_group(
    embedded_settings, workers, report, tmp_path
):
    # One child: the one that ran the run is the one waiting for the next job (holding the
    # pool's queue lock) when the SIGTERM comes.
    (worker,) = workers(embedded_settings, concurrency=1)
    manager = faultkit.manager_for(embedded_settings)
    journal = Journal(tmp_path / "journal.jsonl")
    run = RunFactory(manager, journal)(f"stop-{uuid.uuid4().hex[:8]}", steps=1, delay=0.01)
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    assert journal.count(run_id=run.run_id, event="step") == 1  # it really ran, there
    time.sleep(0.3)  # the child is back waiting for a job

    elapsed = _stopped_in(worker, to_group=True)
    report("embedded-stop", signalled="group", after_a_run=True, exited_after_s=elapsed)
    assert "Traceback" not in worker.log()


@pytest.mark.parametrize("to_group", [False, True], ids=["main-process", "process-group"])
def test_an_idle_worker_stops_promptly_on_sigterm(embedded_settings, workers, report, to_group):
    """To its main process, or to its whole group. Two children: in the group case one
    waits for a job holding the queue lock, the other waits for the lock, and either may
    have taken it by the time its SIGTERM is handled."""
    (worker,) = workers(embedded_settings, concurrency=2)
    elapsed = _stopped_in(worker, to_group=to_group)
    signalled = "group" if to_group else "main"
    report("embedded-stop", signalled=signalled, after_a_run=False, exited_after_s=elapsed)
    assert "Traceback" not in worker.log()

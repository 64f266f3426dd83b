"""Graceful shutdown: SIGTERM to a worker's main process (what docker and Kubernetes send).

A run shorter than the grace period finishes on the stopping worker. A longer one is handed
back when the grace period is over: pending again with its checkpoints, resumed by another
worker from the last one. It is never `running` on a worker that is gone, never `error`.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

from runqueue import RunStatus
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import RunFactory


class StatusWatch(threading.Thread):
    """Polls the run while the shutdown happens: every `running` it sees must be on a worker
    whose main process still lives, and it must never see `error`."""

    def __init__(self, manager, run_id: str, processes: dict) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.manager, self.run_id, self.processes = manager, run_id, processes
        self.seen: list[str] = []
        self.violations: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            run = self.manager.get(self.run_id)
            self.seen.append(run.status.value)
            if run.status is RunStatus.running:
                owner = next(
                    (p for prefix, p in self.processes.items() if run.worker.startswith(prefix)),
                    None,
                )
                if owner is None or owner.process.poll() is not None:
                    self.violations.append(f"running on {run.worker}, which is gone")
            if run.status is RunStatus.error:
                self.violations.append(f"error: {run.error}")
            if run.is_final:
                return
            time.sleep(0.05)


def _running(settings, workers, tmp_path, steps: int):  # noqa: ANN001, ANN202
    """A `steps` run (0.25 s a step) on a worker named `stopping-`, once it made a step."""
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (stopping,) = workers(settings, concurrency=1, name="stopping")
    run = RunFactory(manager, journal)(f"shutdown-{uuid.uuid4().hex[:8]}", steps=steps, delay=0.25)
    faultkit.wait_for(
        lambda: journal.count(run_id=run.run_id, event="step") >= 2,
        timeout=30,
        message="the run's first steps",
    )
    return manager, journal, stopping, run


def test_sigterm_hands_back_a_long_run_and_another_worker_resumes_it(
    shared_backend, workers, report, tmp_path
):
    settings = shared_backend.settings.with_overrides(shutdown_grace_seconds=2.0)
    manager, journal, stopping, run = _running(settings, workers, tmp_path, steps=40)
    (resuming,) = workers(settings, concurrency=1, name="resuming")
    watch = StatusWatch(manager, run.run_id, {"stopping-": stopping, "resuming-": resuming})
    watch.start()

    sigterm_at = time.time()
    stopping.kill(signal.SIGTERM)  # the main process only, as `docker stop` does
    stopping.process.wait(30)
    exited_after = time.time() - sigterm_at
    ended = manager.join(run.run_id, timeout=60)
    watch.done.set()
    watch.join(5)

    events = manager.events(run.run_id)
    handed = [e for e in events if e.detail and "handed back" in e.detail]
    starts = journal.lines(run_id=run.run_id, event="start")
    first_attempt_steps = [
        line
        for line in journal.lines(run_id=run.run_id, event="step")
        if line["pid"] == starts[0]["pid"]
    ]
    report(
        "sigterm-handback",
        grace_s=settings.shutdown_grace_seconds,
        handed_back_after_s=handed[0].at.timestamp() - sigterm_at if handed else -1.0,
        worker_exited_after_s=exited_after,
        attempt=ended.attempt,
        resumed_from_step=len(starts[1]["values"]["steps"]) if len(starts) > 1 else -1,
        status=ended.status.value,
    )
    assert watch.violations == []
    assert "error" not in watch.seen and "pending" in watch.seen
    assert ended.status is RunStatus.success, ended.error
    assert ended.attempt == 2 and ended.worker.startswith("resuming-")
    assert len(handed) == 1 and handed[0].status is RunStatus.pending
    assert handed[0].worker.startswith("stopping-")
    assert handed[0].detail.startswith("handed back by worker stopping-")
    assert stopping.process.returncode == 0
    # The child reported its hand-back before it went: its main process never saw a lost
    # child (whose WorkerLostError would be written over the run another worker resumed).
    assert "WorkerLostError" not in stopping.log() and "exited with" not in stopping.log()
    # The second attempt began from the first one's last checkpoint, not from scratch.
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]
    resumed = starts[1]["values"]["steps"]
    assert len(resumed) == len(first_attempt_steps) >= 2
    final = manager.checkpoints(run.thread_id)[-1].values["steps"]
    assert final[: len(resumed)] == resumed and len(final) == len(resumed) + 40
    # The handback came at the end of the grace period (plus the ~1 s wait for a cancel).
    assert settings.shutdown_grace_seconds <= handed[0].at.timestamp() - sigterm_at < 8


def test_sigterm_lets_a_run_shorter_than_the_grace_finish(shared_backend, workers, tmp_path):
    settings = shared_backend.settings.with_overrides(shutdown_grace_seconds=10.0)
    manager, journal, stopping, run = _running(settings, workers, tmp_path, steps=8)
    sigterm_at = time.time()
    stopping.kill(signal.SIGTERM)
    stopping.process.wait(30)
    exited_after = time.time() - sigterm_at

    ended = manager.get(run.run_id)
    assert ended.status is RunStatus.success and ended.attempt == 1
    assert ended.worker.startswith("stopping-")
    assert journal.count(run_id=run.run_id, event="step") == 8
    assert stopping.process.returncode == 0
    assert exited_after < settings.shutdown_grace_seconds  # it did not wait out the grace


def test_sigterm_to_the_whole_process_group_hands_back_at_once(
    shared_backend, workers, report, tmp_path
):
    """`kill -TERM -<pgid>` (or a supervisor signalling every process): the pool children get
    SIGTERM too, with no grace; each hands its run back as it would at the grace's end."""
    settings = shared_backend.settings.with_overrides(shutdown_grace_seconds=60.0)
    manager, journal, stopping, run = _running(settings, workers, tmp_path, steps=40)
    sigterm_at = time.time()
    stopping.stop()  # SIGTERM to the process group
    handed = [e for e in manager.events(run.run_id) if e.detail and "handed back" in e.detail]
    assert manager.get(run.run_id).status is RunStatus.pending and len(handed) == 1
    handed_back_after = handed[0].at.timestamp() - sigterm_at
    (resuming,) = workers(settings, concurrency=1, name="resuming")
    ended = manager.join(run.run_id, timeout=60)
    report("sigterm-process-group", handed_back_after_s=handed_back_after, attempt=ended.attempt)
    assert handed_back_after < 3  # the ~1 s wait for a cancel, not the 60 s grace
    assert ended.status is RunStatus.success and ended.attempt == 2
    assert ended.worker.startswith("resuming-")

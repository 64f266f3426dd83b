"""One attempt at a run in this process, as one object: the claim, then the lease fence, the
stream writer, the heartbeat and the watchdog, started together and stopped together around
the assistant's body.

    outcome, attempt = Attempt.claim(runtime, run_id, thread_id, worker=..., assistant_id=...)
    with attempt:  # registered, its lease renewed and watched
        attempt.execute(body, kwargs)  # the stream opened, the body called with its context
    # watchdog stopped, every event written, renewals stopped: the final status comes next

The claim (pending -> running) happens in the task's __call__, not in a task_prerun handler:
only the task itself can decide to skip its body (a duplicate delivery, a run cancelled while
no worker listened, a run that must wait behind its thread). How the body ended decides what
the attempt writes before the signals write the final status: nothing once its lease is
lost, a hand-back after a shutdown's SIGTERM (after_sigterm), a re-queue for a retry
(requeue).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from runqueue.errors import DatabaseUnavailableError, RunCancelledError
from runqueue.runtime import Runtime
from runqueue.store import ClaimOutcome
from runqueue.worker import running
from runqueue.worker.fencing import LeaseFence, LeaseLostError, Watchdog, clock
from runqueue.worker.heartbeat import Heartbeat
from runqueue.worker.run_context import CANCEL_POLL_SECONDS, RunContext
from runqueue.worker.running import Execution
from runqueue.worker.sigterm import (
    RunTerminatedError,
    body_left,
    body_started,
    exit_after_run,
    in_prefork_child,
    stay_after_run,
    stop_fenced_run,
)
from runqueue.worker.stream_writer import StreamWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A SIGTERM with no cancel recorded waits this long for one before it hands the run back: a
# revoke runqueue did not send (Flower's terminate) is recorded by the worker's main process,
# in task_revoked, just after Celery sent the SIGTERM.
CANCEL_WAIT_SECONDS = 1.0
HAND_BACK_WRITE_SECONDS = 10.0  # the hand-back's write waits out a database blip this long


class RunHandedBackError(RunTerminatedError):
    """The worker is shutting down: the run went back to pending, for another worker."""


class Attempt:
    """One claimed attempt at a run: it owns the claim token, the fence, the stream writer,
    the heartbeat and the watchdog, from the claim until the run's final status is due."""

    def __init__(
        self,
        runtime: Runtime,
        execution: Execution,
        *,
        number: int,
        values: Any,
        sent_at: float,
        worker: str | None,
        assistant_id: str,
    ):
        settings = runtime.settings
        run_id, thread_id, token = execution.run_id, execution.thread_id, execution.token
        self.runtime, self.execution, self.number, self.worker = runtime, execution, number, worker
        self.fence = LeaseFence(
            run_id,
            thread_id,
            lease_seconds=settings.lease_seconds,
            margin_seconds=settings.fence_margin_seconds,
            sent_at=sent_at,
            hard_stop=in_prefork_child(),
        )
        execution.fence = self.fence
        self.writer = StreamWriter(
            runtime.stream,
            run_id=run_id,
            thread_id=thread_id,
            token=token,
            attempt=number,
            still_owner=lambda: runtime.store.holds_run(run_id, token),
            write_timeout=settings.status_write_timeout,
            fence=self.fence,
        )
        self.context = RunContext(
            run_id=run_id,
            thread_id=thread_id,
            assistant_id=assistant_id,
            attempt=number,
            values=values,
            _store=runtime.store,
            _stream=runtime.stream,
            _writer=self.writer,
            _execution=execution,
            _write_timeout=settings.status_write_timeout,
        )
        self.heartbeat = Heartbeat(
            runtime.store,
            execution,
            settings.heartbeat_interval,
            settings.lease_seconds,
            keep_stream=self.writer.keep_alive,
        )
        self.watchdog = Watchdog(self.fence, on_fence=stop_fenced_run)

    @classmethod
    def claim(
        cls,
        runtime: Runtime,
        run_id: str,
        thread_id: str,
        *,
        worker: str | None,
        assistant_id: str,
    ) -> tuple[ClaimOutcome, Attempt | None]:
        """pending -> running under a new claim token: the claim's outcome, and the attempt
        when this delivery won the run (None: it executes nothing)."""
        settings = runtime.settings
        execution = Execution(
            run_id, thread_id, str(uuid.uuid4()), write_timeout=settings.status_write_timeout
        )
        sent_at = 0.0

        def claim_run() -> Any:
            nonlocal sent_at
            sent_at = clock()  # the lease is counted from before the database saw the claim
            return runtime.store.claim_run(
                run_id, worker or "", execution.token, settings.lease_seconds
            )

        claim = execution.persist(claim_run, f"claim of run {run_id}")
        if not claim.claimed or claim.run is None:
            return claim.outcome, None
        attempt = cls(
            runtime,
            execution,
            number=claim.run.attempt,
            values=claim.values,
            sent_at=sent_at,
            worker=worker,
            assistant_id=assistant_id,
        )
        return claim.outcome, attempt

    def __enter__(self) -> Attempt:
        """Register the run and start renewing and watching its lease, also while the stream
        is being opened (a slow store must not let the reaper hand the run to another
        attempt meanwhile)."""
        running.register(self.execution)  # until task_postrun: the final status is fenced too
        self.heartbeat.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Before the final status: no SIGTERM raises any more, the watchdog is stopped, the
        attempt's events are written and its renewals stop."""
        body_left()
        self.fence.body_ended()  # also when the stream could not even be opened
        self.watchdog.stop()
        # Every event before the end; none once the lease is lost (the writer refuses).
        lost = self.execution.lease_lost()
        self._stop_writing(0.0 if lost else self.runtime.settings.status_write_timeout)

    def execute(self, body: Callable[..., T], kwargs: dict[str, Any]) -> T:
        """The assistant's body, called with its context once the run's stream is open."""
        body_started(self.execution)  # RunTerminatedError for a SIGTERM during the claim
        self.writer.open()  # `metadata`; RunCancelledError if the run ended or moved on
        try:
            return body(self.context, **kwargs)
        finally:
            # The assistant's code is done, finally blocks included: nothing of it can
            # overlap the thread's next run any more, so no hard stop from here on (the
            # attempt's writes stay refused once the lease is lost).
            self.fence.body_ended()

    def after_sigterm(self) -> None:
        """The body unwound from a SIGTERM; the process exits after the run. Raises
        LeaseLostError once the lease is lost (the fence's own SIGTERM, or any: no hand-back,
        no final status, the reaper decides), or RunHandedBackError for a SIGTERM that no
        cancel explains (the worker is shutting down: the run goes back to pending, its
        checkpoints kept, and another worker resumes it). Returns for a cancel, or when the
        hand-back was refused."""
        exit_after_run()
        execution = self.execution
        if execution.lease_lost():
            raise execution.fenced_error() from None
        if not execution.abort_seen.is_set() and self._hand_back():
            # The child does not exit by SIGTERM at task_postrun, as after a cancel: the
            # result must reach the main process first. A child that dies before reporting
            # reads there as WorkerLostError, written over the run while another worker may
            # already have claimed it. The pool ends this child at the end of the shutdown.
            stay_after_run()
            raise RunHandedBackError(f"run {execution.run_id} handed back at shutdown") from None

    def after_failure(self, error: Exception) -> None:
        """The body raised `error`. A SIGTERM from here on (the fence's, a cancel's) must not
        raise inside the writes that follow; the child still exits after the run. Raises
        LeaseLostError once the lease is lost: no retry either, the reaper decides."""
        self.execution.terminating = True
        if self.execution.lease_lost():
            exit_after_run()
            raise self.execution.fenced_error() from error

    def requeue(self, countdown: float, detail: str, error: Exception) -> None:
        """running -> pending for the next attempt (guarded by the claim token), which
        Celery's retry publishes in `countdown` seconds. Raises if no attempt may follow:
        LeaseLostError or RunCancelledError, chained from the body's `error`."""
        self._stop_writing(self.runtime.settings.status_write_timeout)
        execution, run_id = self.execution, self.execution.run_id
        if execution.lease_lost():  # the re-queue would race the reaper: it decides
            exit_after_run()
            raise execution.fenced_error() from error
        requeued = execution.persist(
            lambda: self.runtime.store.requeue_run(
                run_id, execution.token, publish_in=countdown, detail=detail, worker=self.worker
            ),
            f"re-queueing run {run_id}",
        )
        if not requeued:
            # Cancelled while this attempt failed: the cancel wins, no further attempt.
            exit_after_run()
            raise RunCancelledError(f"run {run_id} was cancelled") from error
        logger.info("run %s: %s", run_id, detail, extra=execution.log())

    def _hand_back(self) -> bool:
        """running -> pending for another worker, guarded by the claim token; False if the
        SIGTERM was a cancel after all (or the run is no longer this attempt's)."""
        execution, store, worker = self.execution, self.runtime.store, self.worker
        run_id, log = execution.run_id, execution.log("hand_back")
        if self._cancel_recorded():
            return False
        self._stop_writing(HAND_BACK_WRITE_SECONDS)

        def requeue() -> bool:
            execution.ensure_lease()  # a hand-back after the deadline could race the reaper
            return store.requeue_run(
                run_id,
                execution.token,
                publish_in=None,  # the relay publishes it now
                detail=f"handed back by worker {worker} at shutdown",
                worker=worker,
            )

        try:
            handed_back = execution.persist(
                requeue,
                f"handing back run {run_id}",
                seconds=HAND_BACK_WRITE_SECONDS,
                action="hand_back",
            )
        except (DatabaseUnavailableError, LeaseLostError) as exc:
            logger.warning("run %s not handed back: %s", run_id, exc, extra=log)
            return False  # the lease reaper frees it
        if handed_back:
            logger.warning("run %s handed back: worker %s shuts down", run_id, worker, extra=log)
        return handed_back

    def _stop_writing(self, seconds: float) -> None:
        """This attempt's last events (waiting up to `seconds`), then no more renewals. In
        that order: before a re-queue or a hand-back the next attempt takes the stream over,
        and a renewal that finds the run pending would read as a cancel (the heartbeat would
        SIGTERM this child)."""
        self.writer.close(seconds)
        self.heartbeat.stop()

    def _cancel_recorded(self) -> bool:
        """True if a cancel is recorded within CANCEL_WAIT_SECONDS: the SIGTERM was its."""
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while True:
            try:
                if self.runtime.store.abort_action(self.execution.run_id) is not None:
                    return True
            except DatabaseUnavailableError:
                pass  # not known to be a cancel; the guarded re-queue decides
            if time.monotonic() >= deadline:
                return False
            time.sleep(CANCEL_POLL_SECONDS / 2)

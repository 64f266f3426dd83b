"""The Celery task base for assistants: claim the run, give it a context, stop it on cancel.

An assistant is a Celery task whose body takes a RunContext first:

    @assistant(app)
    def chat(context, prompt): ...

The claim (pending -> running) happens here, in the task's __call__, not in a task_prerun
handler: only the task itself can decide to skip its body (a duplicate delivery, a run
cancelled while no worker listened, a run that must wait behind its thread).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from billiard.process import current_process
from celery import Celery, Task
from celery.exceptions import Ignore

from runqueue import task_events
from runqueue.app import runtime_of
from runqueue.errors import (
    DatabaseUnavailableError,
    InvalidPayloadError,
    RunCancelledError,
    describe,
)
from runqueue.records import ThreadState
from runqueue.store.decisions import RunStore
from runqueue.store.queries import RunQueries
from runqueue.stream import RunStream
from runqueue.worker import pool_recycle
from runqueue.worker.durability import persist
from runqueue.worker.fencing import EXIT_LEASE_LOST, LeaseFence, LeaseLostError, Watchdog, clock
from runqueue.worker.retries import NO_RETRY, RetryPolicy
from runqueue.worker.stream_writer import StreamWriter

logger = logging.getLogger(__name__)

# RunTask.__call__(self, thread_id, **kwargs): a run's kwargs may not use these names.
RESERVED_KWARGS = frozenset({"self", "thread_id"})

T = TypeVar("T")

CANCEL_POLL_SECONDS = 0.25  # how often context.cancelled() may ask the database
# A SIGTERM with no cancel recorded waits this long for one before it hands the run back: a
# revoke runqueue did not send (Flower's terminate) is recorded by the worker's main process,
# in task_revoked, just after Celery sent the SIGTERM.
CANCEL_WAIT_SECONDS = 1.0
HAND_BACK_WRITE_SECONDS = 10.0  # the hand-back's write waits out a database blip this long


class RunTerminatedError(RunCancelledError):
    """The run's worker process received SIGTERM."""


class RunHandedBackError(RunTerminatedError):
    """The worker is shutting down: the run went back to pending, for another worker."""


@dataclass
class Execution:
    """The run this process is executing now (a prefork child executes one at a time).

    Three ways it can stop early, kept apart: a cancel (`abort_seen`: the run ends
    `interrupted`), a shutdown (a SIGTERM no cancel explains: the run is handed back), and a
    lost lease (`fence`: the run stops and writes nothing more; the reaper decides)."""

    run_id: str
    thread_id: str
    token: str
    fence: LeaseFence | None = None  # None only before the claim
    abort_seen: threading.Event = field(default_factory=threading.Event)
    terminating: bool = False  # the run is unwinding from a cancel: a SIGTERM raises no more

    def cancelled_error(self, message: str) -> RunCancelledError:
        """The error that unwinds the assistant once runqueue saw the run cancelled or moved
        on. From here on a SIGTERM (the revoke's, or the heartbeat's for the same cause)
        raises nothing: it would land in the assistant's finally blocks and cut them short."""
        self.terminating = True
        return RunCancelledError(message)

    def lease_lost(self) -> bool:
        """True once this attempt's lease is lost (it reads the clock: no I/O)."""
        return self.fence is not None and self.fence.expired()

    def fenced_error(self) -> LeaseLostError:
        """The error that unwinds a run whose lease is lost (a SIGTERM raises no more)."""
        assert self.fence is not None
        self.terminating = True
        return self.fence.error()

    def ensure_lease(self) -> None:
        """Before a write: LeaseLostError once the lease is lost."""
        if self.lease_lost():
            raise self.fenced_error()


_executions: dict[str, Execution] = {}  # run_id -> execution, in this process


@dataclass
class _ChildState:
    """Where this prefork child is, for the SIGTERM handler."""

    in_task: bool = False  # from __call__ until task_postrun: defer exiting
    in_body: Execution | None = None  # the run whose assistant code runs now
    terminate: bool = False  # SIGTERM arrived: exit once the run's status is written
    in_statement: bool = False  # the assistant's thread waits for one of the run's statements
    sigterm_deferred: bool = False  # a SIGTERM came meanwhile: raised once it returns
    sigterm_again: threading.Timer | None = None  # re-sends a deferred SIGTERM, at the latest
    fenced: bool = False  # the run lost its lease: exit at task_postrun, at once


_child = _ChildState()


SIGTERM_DEFER_SECONDS = 2.0  # a cancel's SIGTERM waits this long for a statement, at most


def _signal_again() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _statement(operation: Callable[[], T]) -> T:
    """Run one of the run's own statements (a checkpoint, a cancel poll) from the assistant's
    thread so that a cancel's SIGTERM does not cut it in half: a psycopg call interrupted by
    an exception leaves its pooled connection mid-protocol (SQLAlchemy logs an error while
    resetting it, and the next statement on it fails). The SIGTERM is raised as soon as the
    statement returns. A fenced run's SIGTERM is not deferred: its statement may hang on a
    dead connection, and interrupting it is the point."""
    if _child.in_statement or threading.current_thread() is not threading.main_thread():
        return operation()
    _child.in_statement = True
    try:
        return operation()
    finally:
        _child.in_statement = False
        execution = _child.in_body
        if _child.sigterm_deferred:
            _child.sigterm_deferred = False
            if _child.sigterm_again is not None:
                _child.sigterm_again.cancel()
                _child.sigterm_again = None
            if execution is not None and not execution.terminating:
                execution.terminating = True
                raise RunTerminatedError()


@dataclass
class RunContext:
    """What an assistant gets: its run, the thread's latest state, checkpoints, cancellation."""

    run_id: str
    thread_id: str
    assistant_id: str
    attempt: int
    values: Any  # the thread's latest checkpoint values, or None
    _store: RunStore
    _stream: RunStream
    _writer: StreamWriter
    _execution: Execution
    _last_poll: float = 0.0
    _write_timeout: float = 120.0  # Settings.status_write_timeout

    def checkpoint(self, values: Any) -> None:
        """Save thread state. Raises RunCancelledError if the run was cancelled meanwhile, or
        LeaseLostError (one) once this worker lost the run's lease."""
        execution = self._execution

        def save() -> bool:
            execution.ensure_lease()  # before every try: a retry may come after the deadline
            return self._store.save_checkpoint(self.run_id, execution.token, values)

        saved = self._persist(save, f"checkpoint of run {self.run_id}")
        if not saved:
            raise self._execution.cancelled_error(f"run {self.run_id} no longer owns its thread")
        self.values = values

    def emit(self, event: str, data: Any = None) -> None:
        """Send one event to the run's stream, for every reader (RunManager.stream).

        `data` must be JSON within Settings.stream_max_event_bytes, and `event` not a name
        runqueue writes itself (metadata, error, end, gap): InvalidEventError at once.
        Events are written in order, in batches, by the attempt's stream writer; once this
        attempt no longer owns the run (it was cancelled, reaped while this process was cut
        off, or a newer attempt took it) the next emit() raises RunCancelledError."""
        self._execution.ensure_lease()
        try:
            self._writer.put(event, self._stream.encode(event, data))
        except LeaseLostError:
            raise self._execution.fenced_error() from None
        except RunCancelledError as refused:
            raise self._execution.cancelled_error(str(refused)) from None

    @property
    def claim_token(self) -> str:
        """This attempt's claim token: what its writes are fenced on (an integration's own
        checkpointer, such as runqueue.langgraph's, writes only while the run holds it)."""
        return self._execution.token

    @property
    def store(self) -> RunStore:
        """The store this attempt writes through, for integrations that write thread state."""
        return self._store

    @property
    def write_timeout(self) -> float:
        """How long this attempt's writes wait out a database outage."""
        return self._write_timeout

    def _persist(self, operation: Callable[[], T], what: str) -> T:
        return persist(
            lambda: _statement(operation),
            total_seconds=self._write_timeout,
            what=what,
            extra={"run_id": self.run_id, "thread_id": self.thread_id},
        )

    def cancelled(self) -> bool:
        """True once someone cancelled this run, or this worker lost its lease; the
        cooperative check for any pool."""
        if self._execution.abort_seen.is_set() or self._execution.lease_lost():
            return True
        now = time.monotonic()
        if now - self._last_poll >= CANCEL_POLL_SECONDS:
            self._last_poll = now
            try:
                if _statement(lambda: self._store.abort_action(self.run_id)) is not None:
                    self._execution.abort_seen.set()
            except DatabaseUnavailableError:
                pass  # a database blip is not a cancel; the next poll asks again
        return self._execution.abort_seen.is_set()

    def raise_if_cancelled(self) -> None:
        """Stop here, through the assistant's finally blocks, if the run was cancelled
        (RunCancelledError) or this worker lost its lease (LeaseLostError)."""
        self._execution.ensure_lease()
        if self.cancelled():
            raise self._execution.cancelled_error(f"run {self.run_id} was cancelled")


class RunTask(Task):
    """Base class of every assistant task."""

    typing = False  # the message carries (thread_id, **kwargs); the body takes a context
    # Celery's task events for a run, corrected where runqueue knows better (for Flower).
    Request = "runqueue.worker.task_request:RunRequest"
    # Any exception ends the run with a status (error, interrupted, timeout): Celery logs it
    # at INFO without a traceback, runqueue's RunRequest logs it with one (task_request.py).
    throws = (Exception,)
    run_retry: RetryPolicy | None = None  # per assistant: @assistant(app, run_retry=...)
    # True: the kwargs are the LangGraph runs API's fields (input, config, command,
    # stream_mode), as a graph takes them; False: `input` is the task's keyword arguments.
    takes_run_fields = False

    def check_kwargs(self, thread_id: str, kwargs: dict[str, Any]) -> None:
        """Check a run's kwargs when it is created (InvalidPayloadError); a plain assistant
        takes any JSON object whose keys are not the message's own arguments (the worker
        would fail to call it before it could claim the run). A graph assistant checks the
        LangGraph run fields."""
        taken = sorted(RESERVED_KWARGS & kwargs.keys())
        if taken:
            raise InvalidPayloadError(
                f"kwargs may not use the name {taken[0]!r}: runqueue passes it itself"
            )

    def thread_state(self, thread_id: str) -> ThreadState:
        """The thread's state as this assistant keeps it: its latest checkpoint."""
        latest = RunQueries(runtime_of(self.app).store).latest_checkpoint(thread_id)
        if latest is None:
            return ThreadState(thread_id=thread_id, values=None, assistant_id=self.name)
        return ThreadState(
            thread_id=thread_id,
            values=latest.values,
            checkpoint_id=str(latest.checkpoint_id),
            metadata={"run_id": latest.run_id},
            created_at=latest.created_at,
            assistant_id=self.name,
        )

    def __call__(self, thread_id: str, **kwargs: Any) -> Any:
        runtime = runtime_of(self.app)
        settings = runtime.settings
        run_id = self.request.id
        token = str(uuid.uuid4())
        log = {"run_id": run_id, "thread_id": thread_id}
        install_sigterm_handler()
        _child.in_task = True
        sent_at = 0.0

        def claim_run() -> Any:
            nonlocal sent_at
            sent_at = clock()  # the lease is counted from before the database saw the claim
            return runtime.store.claim_run(
                run_id, self.request.hostname or "", token, settings.lease_seconds
            )

        claim = persist(
            claim_run,
            total_seconds=settings.status_write_timeout,
            what=f"claim of run {run_id}",
            extra=log,
        )
        if not claim.claimed or claim.run is None:
            logger.info("run %s not started: %s", run_id, claim.outcome.value, extra=log)
            # Ignore sends no task event: say in Flower what became of this delivery.
            task_events.announce_skip(self.app, run_id, thread_id, claim.outcome)
            raise Ignore()
        fence = LeaseFence(
            run_id,
            thread_id,
            lease_seconds=settings.lease_seconds,
            margin_seconds=settings.fence_margin_seconds,
            sent_at=sent_at,
            hard_stop=in_prefork_child(),
        )
        execution = Execution(run_id=run_id, thread_id=thread_id, token=token, fence=fence)
        writer = StreamWriter(
            runtime.stream,
            run_id=run_id,
            thread_id=thread_id,
            token=token,
            attempt=claim.run.attempt,
            still_owner=lambda: runtime.store.holds_run(run_id, token),
            write_timeout=settings.status_write_timeout,
            fence=fence,
        )
        context = RunContext(
            run_id=run_id,
            thread_id=thread_id,
            assistant_id=self.name,
            attempt=claim.run.attempt,
            values=claim.values,
            _store=runtime.store,
            _stream=runtime.stream,
            _writer=writer,
            _execution=execution,
            _write_timeout=settings.status_write_timeout,
        )
        heartbeat = Heartbeat(
            runtime.store,
            execution,
            settings.heartbeat_interval,
            settings.lease_seconds,
            keep_stream=writer.keep_alive,
        )
        watchdog = Watchdog(fence, on_fence=lambda: _stop_fenced(execution))
        # The lease is renewed from here on, also while the stream is being opened (a slow
        # store must not let the reaper hand the run to another attempt meanwhile).
        _executions[run_id] = execution  # until task_postrun: the final status is fenced too
        self.request.runqueue_execution = execution  # which delivery registered it (forget)
        heartbeat.start()
        watchdog.start()
        try:
            _child.in_body = execution
            if _child.terminate:  # SIGTERM while claiming: unwind once, as _on_sigterm would
                execution.terminating = True
                raise RunTerminatedError()
            writer.open()  # `metadata`; RunCancelledError if the run ended or moved on
            try:
                return self.run(context, **kwargs)
            finally:
                # The assistant's code is done, finally blocks included: nothing of it can
                # overlap the thread's next run any more, so no hard stop from here on (the
                # attempt's writes stay refused once the lease is lost).
                fence.body_ended()
        except RunTerminatedError:
            if in_prefork_child():
                _child.terminate = True
            if execution.lease_lost():
                # The fence's own SIGTERM (or any, once the lease is lost): no hand-back, no
                # final status; the reaper decides.
                raise execution.fenced_error() from None
            # A SIGTERM that no cancel explains (the worker is shutting down): the run goes
            # back to pending, its checkpoints kept, and another worker resumes it.
            if not execution.abort_seen.is_set() and self._hand_back(execution, writer, heartbeat):
                # The child does not exit by SIGTERM at task_postrun, as after a cancel: the
                # result must reach the main process first. A child that dies before
                # reporting reads there as WorkerLostError, written over the run while
                # another worker may already have claimed it. The pool ends this child at
                # the end of the shutdown.
                _child.terminate = False
                raise RunHandedBackError(f"run {run_id} handed back at shutdown") from None
            raise
        except RunCancelledError:
            # However the cancel arrived (SIGTERM, a refused checkpoint, the cooperative
            # check), the process that ran a cancelled run stops, with whatever it started.
            if in_prefork_child():
                _child.terminate = True
            raise
        except Exception as error:
            # The body has ended: a SIGTERM from here on (the fence's, a cancel's) must not
            # raise inside the writes that follow; the child still exits after the run.
            execution.terminating = True
            if execution.lease_lost():  # no retry either: the reaper decides
                if in_prefork_child():
                    _child.terminate = True
                raise execution.fenced_error() from error
            policy = self.run_retry or NO_RETRY
            if not policy.allows(claim.run.attempt, error):
                raise
            # This attempt's last events go before the run is handed to the next attempt,
            # which takes the stream over. Then stop renewing: a renewal that finds the run
            # pending must not read as a cancel (the heartbeat would SIGTERM this child).
            writer.close(settings.status_write_timeout)
            heartbeat.stop()
            raise self._retry_later(execution, claim.run.attempt, policy, error) from error
        finally:
            _child.in_body = None
            fence.body_ended()  # also when the stream could not even be opened
            watchdog.stop()
            # Every event before the end; none once the lease is lost (the writer refuses).
            writer.close(0.0 if execution.lease_lost() else settings.status_write_timeout)
            heartbeat.stop()

    def _hand_back(self, execution: Execution, writer: StreamWriter, heartbeat: Heartbeat) -> bool:
        """running -> pending for another worker, guarded by the claim token; False if the
        SIGTERM was a cancel after all (or the run is no longer this attempt's)."""
        runtime = runtime_of(self.app)
        run_id, worker = execution.run_id, self.request.hostname
        log = {"run_id": run_id, "thread_id": execution.thread_id, "action": "hand_back"}
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while True:
            try:
                if runtime.store.abort_action(run_id) is not None:
                    return False
            except DatabaseUnavailableError:
                pass  # not known to be a cancel; the guarded re-queue decides
            if time.monotonic() >= deadline:
                break
            time.sleep(CANCEL_POLL_SECONDS / 2)
        # This attempt's last events go first; the next attempt takes the stream over. Then
        # stop renewing: a renewal that finds the run pending would read as a cancel.
        writer.close(HAND_BACK_WRITE_SECONDS)
        heartbeat.stop()

        def requeue() -> bool:
            execution.ensure_lease()  # a hand-back after the deadline could race the reaper
            return runtime.store.requeue_run(
                run_id,
                execution.token,
                publish_in=None,  # the relay publishes it now
                detail=f"handed back by worker {worker} at shutdown",
                worker=worker,
            )

        try:
            handed_back = persist(
                requeue,
                total_seconds=HAND_BACK_WRITE_SECONDS,
                what=f"handing back run {run_id}",
                extra=log,
            )
        except (DatabaseUnavailableError, LeaseLostError) as exc:
            logger.warning("run %s not handed back: %s", run_id, exc, extra=log)
            return False  # the lease reaper frees it
        if handed_back:
            logger.warning("run %s handed back: worker %s shuts down", run_id, worker, extra=log)
        return handed_back

    def _retry_later(
        self, execution: Execution, attempt: int, policy: RetryPolicy, error: Exception
    ) -> BaseException:
        """Put the run back to pending (guarded by the claim token), then let Celery's own
        retry publish it again after the backoff."""
        runtime = runtime_of(self.app)
        run_id = execution.run_id
        countdown = policy.delay(attempt)
        detail = (
            f"attempt {attempt}/{policy.max_attempts} failed, retry in {countdown:g}s: "
            f"{describe(error)}"
        )
        if execution.lease_lost():  # the re-queue would race the reaper: it decides
            if in_prefork_child():
                _child.terminate = True
            return execution.fenced_error()
        requeued = persist(
            lambda: runtime.store.requeue_run(
                run_id,
                execution.token,
                publish_in=countdown,
                detail=detail,
                worker=self.request.hostname,
            ),
            total_seconds=runtime.settings.status_write_timeout,
            what=f"re-queueing run {run_id}",
            extra={"run_id": run_id, "thread_id": execution.thread_id},
        )
        if not requeued:
            # Cancelled while this attempt failed: the cancel wins, no further attempt.
            if in_prefork_child():
                _child.terminate = True
            return RunCancelledError(f"run {run_id} was cancelled")
        logger.info(
            "run %s: %s",
            run_id,
            detail,
            extra={"run_id": run_id, "thread_id": execution.thread_id},
        )
        # Raises celery.exceptions.Retry (or Reject if the broker is down: the relay then
        # publishes the pending run once its backoff has passed).
        return self.retry(exc=error, countdown=countdown, max_retries=policy.max_attempts)


def token_of(run_id: str) -> str | None:
    """The claim token if this process executes the run (prefork child), else None."""
    execution = _executions.get(run_id)
    return execution.token if execution else None


def lease_lost(run_id: str) -> bool:
    """True if this process executes the run and lost its lease: it writes nothing more."""
    execution = _executions.get(run_id)
    return execution is not None and execution.lease_lost()


def forget(run_id: str, request: Any) -> None:
    """At task_postrun: the run's final status is written (or refused); forget it. Only the
    delivery that registered it does: a duplicate of a running run, skipped in another
    thread of the same process (threads pool), must not drop the running attempt's fence."""
    execution = getattr(request, "runqueue_execution", None)
    if execution is not None and _executions.get(run_id) is execution:
        del _executions[run_id]


def _stop_fenced(execution: Execution) -> None:
    """The watchdog fired: in a prefork child, the SIGTERM of a cancel (the run unwinds
    through its finally blocks; __call__ sees the lost lease and neither hands the run back
    nor writes an end). Other pools stop at the next cooperative check."""
    if in_prefork_child():
        os.kill(os.getpid(), signal.SIGTERM)


class Heartbeat(threading.Thread):
    """Renews the run's lease and notices a cancel even when the revoke broadcast was lost.

    A renewal that fails is tried again at the next beat; the fence (fencing.py), not this
    thread, stops a run whose renewals keep failing: a renewal can hang for minutes on a
    partitioned connection."""

    def __init__(
        self,
        store: RunStore,
        execution: Execution,
        interval: float,
        lease: float,
        keep_stream: Callable[[], None] | None = None,
    ):
        super().__init__(name=f"runqueue-heartbeat-{execution.run_id}", daemon=True)
        self.store, self.execution, self.keep_stream = store, execution, keep_stream
        self.interval, self.lease = interval, lease
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        run_id, fence = self.execution.run_id, self.execution.fence
        log = {"run_id": run_id, "thread_id": self.execution.thread_id, "action": "heartbeat"}
        signalled = False  # the cancel's SIGTERM, sent once
        while not self._stopped.wait(self.interval):
            if fence is not None and fence.expired():
                return  # lost: the run is stopping, and a late renewal must not extend it
            sent_at = clock()
            try:
                ours, abort = self.store.renew_lease(run_id, self.execution.token, self.lease)
            except Exception as exc:  # a database blip: try again next beat
                left = fence.deadline - clock() if fence is not None else float("nan")
                logger.warning(
                    "lease renewal failed for run %s (it stops itself in %.1fs unless a "
                    "renewal succeeds): %s",
                    run_id,
                    left,
                    exc,
                    extra=log,
                )
                continue
            if abort is not None and not signalled:
                signalled = True
                self.execution.abort_seen.set()
                if in_prefork_child() and not self._stopped.is_set():
                    os.kill(os.getpid(), signal.SIGTERM)
                # Renewals go on: the run keeps its lease while it unwinds (its finally
                # blocks, its last events), or the reaper would end it meanwhile.
            if not ours:
                # Reaped, re-queued or handed on: the watchdog stops the run, which writes
                # nothing more.
                if fence is not None:
                    fence.lose(
                        "the run is no longer this attempt's (its lease ended); last renewal "
                        f"{clock() - fence.renewed_at:.1f}s ago"
                    )
                return
            if fence is not None:
                fence.renewed(sent_at)
            if self.keep_stream is not None:
                self.keep_stream()  # by the stream's own thread: a hung store stalls not this


def exit_after_run() -> None:
    """In a prefork child: exit once this run's final status is written (what a cancel
    does), for a run that leaves work running in threads of its own that nothing else can
    stop. Elsewhere: nothing."""
    if in_prefork_child():
        _child.terminate = True


def in_prefork_child() -> bool:
    """True in a prefork pool child: a cancelled run's process exits once its final status is
    written, and anything the run left running in other threads stops with it."""
    return current_process().name != "MainProcess"


def install_sigterm_handler() -> None:
    """In a prefork child, SIGTERM (revoke terminate=True) unwinds the run's finally blocks
    as RunTerminatedError, then the child exits once its final status is written.

    Installed at the first run, not in worker_process_init: billiard replaces the SIGTERM
    handler with its own (an immediate exit) after the process initializer has run."""
    if in_prefork_child() and signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, _frame: Any) -> None:
    if not _child.in_task:
        # Between runs: die now, as the default handler would.
        _exit_by_sigterm()
    _child.terminate = True
    execution = _child.in_body
    if execution is not None and not execution.terminating:
        if _child.in_statement and not _child.sigterm_deferred and not execution.lease_lost():
            # Raised when the statement returns (_statement), or at the latest when this
            # SIGTERM comes again, SIGTERM_DEFER_SECONDS later: a statement hung on a dead
            # connection must not hold a cancel back.
            _child.sigterm_deferred = True
            _child.sigterm_again = threading.Timer(SIGTERM_DEFER_SECONDS, _signal_again)
            _child.sigterm_again.daemon = True
            _child.sigterm_again.start()
            return
        execution.terminating = True
        raise RunTerminatedError()
    # Claiming or writing the final status: finish that, then exit (exit_if_terminated).


def exit_after_fenced_run() -> None:
    """In a prefork child whose run lost its lease: exit at task_postrun, at once, with
    EXIT_LEASE_LOST. Not once the main process has read the result (pool_recycle): in a
    partition the main process is cut off too, blocked on its broker, and this child would
    outlive the lease. The main process's WorkerLostError for that exit writes nothing
    (signals), so it cannot end an attempt the reaper gave the run since."""
    if in_prefork_child():
        _child.terminate = _child.fenced = True


def task_finished() -> None:
    """Called from task_postrun: a child told to terminate really stops, now or, on an
    AsynPool, once the main process has its result (pool_recycle)."""
    _child.in_task = False
    if _child.fenced:
        os._exit(EXIT_LEASE_LOST)
    if not _child.terminate:
        return
    if pool_recycle.leave_after_result():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the main process's SIGTERM ends it
    else:
        _exit_by_sigterm()


def _exit_by_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def assistant(
    app: Celery, name: str | None = None, **task_options: Any
) -> Callable[[Callable[..., Any]], RunTask]:
    """Register a function as an assistant: a Celery task named `name` taking a RunContext.

    Registered on `app` alone (Celery's default, shared=True, would add it to every app the
    process creates later, and the first callable registered under a name would win)."""
    task_options.setdefault("shared", False)

    def register(function: Callable[..., Any]) -> RunTask:
        return app.task(base=RunTask, name=name or function.__name__, **task_options)(function)

    return register

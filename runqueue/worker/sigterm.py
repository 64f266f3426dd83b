"""SIGTERM in a prefork pool child: a cancel's (revoke terminate=True), the fence's, or the
worker's shutdown. It unwinds the run's body as RunTerminatedError, never in the middle of one
of the run's own statements, and the child exits once the run's final status is written.

Between runs a SIGTERM goes to billiard's own handler, which exits at once by unwinding: an
idle child waits for its next job holding the pool's queue lock, and must let go of it (a
SIGTERM to the worker's whole process group, at shutdown). While the child claims its run or
writes its final status, the SIGTERM only marks the child to exit afterwards (task_finished,
from task_postrun).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from billiard.process import current_process

from runqueue.errors import RunCancelledError
from runqueue.worker import pool_recycle
from runqueue.worker.fencing import EXIT_LEASE_LOST
from runqueue.worker.running import Execution

T = TypeVar("T")

SIGTERM_DEFER_SECONDS = 2.0  # a cancel's SIGTERM waits this long for a statement, at most


class RunTerminatedError(RunCancelledError):
    """The run's worker process received SIGTERM."""


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
    between_runs: Any = None  # the SIGTERM handler _on_sigterm replaced (billiard's)


_child = _ChildState()


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
        _child.between_runs = signal.signal(signal.SIGTERM, _on_sigterm)


def task_started() -> None:
    """From the task's __call__ until task_postrun (task_finished), a SIGTERM no longer kills
    the child at once: the run's status is written first."""
    install_sigterm_handler()
    _child.in_task = True


def body_started(execution: Execution) -> None:
    """The run's body starts: a SIGTERM from here on unwinds it. One that came while the run
    was being claimed unwinds it now, once, as _on_sigterm would have."""
    _child.in_body = execution
    if _child.terminate:
        execution.terminating = True
        raise RunTerminatedError()


def body_left() -> None:
    """The run's body and the handling of how it ended are over: a SIGTERM raises no more."""
    _child.in_body = None


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


def _on_sigterm(signum: int, _frame: Any) -> None:
    if not _child.in_task:
        # Between runs: exit now as billiard does, unwinding. Killed where it stands, a child
        # waiting for a job took the pool's queue lock with it, and the pool waited for ever.
        if callable(_child.between_runs):
            _child.between_runs(signum, _frame)
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
    # Claiming or writing the final status: finish that, then exit (task_finished).


def stop_fenced_run() -> None:
    """The watchdog fired: in a prefork child, the SIGTERM of a cancel (the run unwinds
    through its finally blocks; the attempt sees the lost lease and neither hands the run
    back nor writes an end). Other pools stop at the next cooperative check."""
    if in_prefork_child():
        os.kill(os.getpid(), signal.SIGTERM)


def exit_after_run() -> None:
    """In a prefork child: exit once this run's final status is written (what a cancel
    does), for a run that leaves work running in threads of its own that nothing else can
    stop. Elsewhere: nothing."""
    if in_prefork_child():
        _child.terminate = True


def stay_after_run() -> None:
    """This child does not exit by SIGTERM at task_postrun (a run handed back at shutdown):
    its result must reach the main process first, and the pool ends it with the shutdown."""
    _child.terminate = False


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

"""Celery task signals -> final statuses in SQL.

Signals fire in different processes: task_success, task_postrun and most task_failure calls
in the pool child that ran the body; task_revoked and the failures of a lost or time-limited
child (WorkerLostError, TimeLimitExceeded) in the worker's main process. Every write is a
guarded UPDATE (store.finish_run), so whichever signal arrives late or twice changes nothing.
A pool child whose run lost its lease (worker/fencing.py) writes no final status at all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from billiard.exceptions import Terminated, WorkerLostError
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from runqueue import task_events
from runqueue.app import runtime_of
from runqueue.dispatch import apply_effects
from runqueue.errors import RunCancelledError, describe
from runqueue.records import AbortAction, RunStatus
from runqueue.store.transactions import PENDING
from runqueue.worker import execution
from runqueue.worker.broker_watch import BrokerWatchStep
from runqueue.worker.durability import persist
from runqueue.worker.fencing import EXIT_LEASE_LOST, LeaseLostError
from runqueue.worker.fleet import FleetStep
from runqueue.worker.maintenance import MaintenanceStep
from runqueue.worker.pool_recycle import PoolRecycleStep

logger = logging.getLogger(__name__)

OUTSIDE_CANCEL_WRITE_SECONDS = 2.0  # a foreign terminate's cancel record, at most


def _is_run_task(task: Any) -> bool:
    return isinstance(task, execution.RunTask)


def _finish(task: Any, run_id: str, status: RunStatus, **fields: Any) -> bool:
    """Write a final status through the store, then publish the run it released. A database
    outage is waited out with backoff (Settings.status_write_timeout), never dropped."""
    runtime = runtime_of(task.app)

    def write() -> Any:
        if execution.lease_lost(run_id):  # asked before every try: a retry may come late
            raise LeaseLostError(f"run {run_id} lost its lease")
        return runtime.store.finish_run(run_id, status, **fields)

    try:
        changed, effects = persist(
            write,
            total_seconds=runtime.settings.status_write_timeout,
            what=f"status {status.value} of run {run_id}",
            extra={"run_id": run_id},
        )
    except LeaseLostError:
        _fenced(run_id)
        return False
    # Celery's own task events report success, error and timeout; runqueue reports an
    # interrupt itself, with its action (interrupt or rollback) as the reason.
    apply_effects(task.app, effects, announce_ends=status is RunStatus.interrupted)
    if changed:
        logger.info("run %s -> %s", run_id, status.value, extra={"run_id": run_id})
    return changed


def _fenced(run_id: str) -> bool:
    """True if this process lost the run's lease: it writes no final status (the reaper, or
    the attempt after it, decides), and a pool child exits after the run."""
    if not execution.lease_lost(run_id):
        return False
    logger.warning(
        "run %s: lease lost, no final status written (the reaper decides)",
        run_id,
        extra={"run_id": run_id, "action": "fence"},
    )
    execution.exit_after_fenced_run()
    return True


@signals.task_success.connect
def _on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if not _is_run_task(sender):
        return
    run_id = sender.request.id
    if _fenced(run_id):
        return
    fields: dict[str, Any] = dict(token=execution.token_of(run_id), worker=sender.request.hostname)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        error = f"result is not JSON: {exc}"
        _finish(sender, run_id, RunStatus.error, error=error, error_type="TypeError", **fields)
        return
    _finish(sender, run_id, RunStatus.success, result=result, **fields)


@signals.task_failure.connect
def _on_task_failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    if not _is_run_task(sender) or task_id is None or _fenced(task_id):
        return
    runtime = runtime_of(sender.app)
    fields: dict[str, Any] = dict(token=execution.token_of(task_id))
    if fields["token"] is None and task_events.worker_node() is not None:
        # The main process, for a child it lost (or a hard time limit): no token, so fence
        # on the claim's worker. The run may have been handed back, or reaped and re-queued,
        # and claimed by another worker since: that attempt is not this worker's to end.
        fields["claimed_by"] = task_events.worker_node()
    error = describe(exception) if exception is not None else "unknown error"
    error_type = type(exception).__name__ if exception is not None else None
    if isinstance(exception, execution.RunHandedBackError):
        return  # the worker shuts down: the run is pending again, for another worker
    if isinstance(exception, WorkerLostError) and f"exitcode {EXIT_LEASE_LOST}" in str(exception):
        # A child that stopped itself at its lease's end (fencing's hard stop): the reaper
        # decides how the run ends (error, or another attempt), and may already have
        # re-queued it for an attempt this worker claims again.
        return
    if isinstance(exception, RunCancelledError | Terminated):
        action = persist(
            lambda: runtime.store.abort_action(task_id),
            total_seconds=runtime.settings.status_write_timeout,
            what=f"reading the cancel of run {task_id}",
            extra={"run_id": task_id},
        )
        if action is None:
            # SIGTERM that no cancel asked for and the run not handed back (no longer this
            # attempt's): the main process's WorkerLostError, or the lease reaper, ends it.
            return
        _finish(sender, task_id, RunStatus.interrupted, detail=f"cancelled ({action})", **fields)
    elif isinstance(exception, SoftTimeLimitExceeded | TimeLimitExceeded):
        _finish(sender, task_id, RunStatus.timeout, error=error, error_type=error_type, **fields)
    elif isinstance(exception, WorkerLostError):
        error = f"worker lost: {exception}"
        _finish(sender, task_id, RunStatus.error, error=error, error_type=error_type, **fields)
    else:
        _finish(sender, task_id, RunStatus.error, error=error, error_type=error_type, **fields)


@signals.task_revoked.connect
def _on_task_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    if not _is_run_task(sender) or request is None:
        return
    if terminated:
        # The child is being stopped; it writes `interrupted` itself once its finally blocks
        # ran, so the thread's next run cannot start while this one still executes.
        _record_outside_cancel(sender, request.id)
        return
    # Revoked before it started (the cancel reached the worker first): never executes.
    _finish(sender, request.id, RunStatus.interrupted, detail="revoked", from_statuses=(PENDING,))


def _record_outside_cancel(task: Any, run_id: str) -> None:
    """A terminate runqueue did not send (Flower's Terminate, `celery control revoke`) is a
    cancel: record it (interrupt) unless one is recorded, so the child, which waits a moment
    for it after its SIGTERM, ends the run `interrupted` and the thread moves on. No revoke
    is sent: Celery already signalled the child."""
    runtime = runtime_of(task.app)
    cancelled, effects = persist(
        lambda: runtime.store.cancel_run(run_id, AbortAction.interrupt, uncancelled_only=True),
        # The consumer's own thread: a database outage must not stall it. Not recorded, the
        # child reads its SIGTERM as a shutdown and hands the run back (nothing is lost).
        total_seconds=OUTSIDE_CANCEL_WRITE_SECONDS,
        what=f"recording the terminate of run {run_id}",
        extra={"run_id": run_id},
    )
    effects.terminate.clear()
    apply_effects(task.app, effects)
    if cancelled:
        logger.info(
            "run %s terminated from outside runqueue: cancel recorded (interrupt)",
            run_id,
            extra={"run_id": run_id, "action": "outside_terminate"},
        )


@signals.task_postrun.connect
def _on_task_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    if _is_run_task(sender):
        if task_id is not None:
            execution.forget(task_id, sender.request)  # kept until now: the end is fenced too
        execution.task_finished()


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Relaying and reaping start and stop with the worker: add their bootstep before the
    worker builds its blueprint from app.steps["worker"] (worker_init comes just before)."""
    if getattr(sender.app, "runqueue", None) is not None:
        task_events.use_worker_hostname(sender.hostname)
        sender.app.steps["worker"].add(MaintenanceStep)
        sender.app.steps["worker"].add(FleetStep)  # readiness, the workers table, grace
        sender.app.steps["consumer"].add(BrokerWatchStep)  # republish what a broker lost
        sender.app.steps["worker"].add(PoolRecycleStep)  # cancelled runs' children

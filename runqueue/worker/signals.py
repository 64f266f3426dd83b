"""Celery task signals -> final statuses in SQL.

Signals fire in different processes: task_success, task_postrun and most task_failure calls
in the pool child that ran the body; task_revoked and the failures of a lost or time-limited
child (WorkerLostError, TimeLimitExceeded) in the worker's main process. Every write is a
guarded UPDATE (store.finish_run), so whichever signal arrives late or twice changes nothing.
A pool child whose run lost its lease (worker/fencing.py) writes no final status at all.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from billiard.exceptions import Terminated, WorkerLostError
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from runqueue.celery import task_events
from runqueue.celery.app import runtime_of
from runqueue.celery.dispatch import apply_effects
from runqueue.errors import PoolHandOffError, RunCancelledError, describe
from runqueue.records import AbortAction, RunStatus
from runqueue.runtime import Runtime
from runqueue.store import PENDING
from runqueue.worker import poison, running, sigterm
from runqueue.worker.attempt import RunHandedBackError
from runqueue.worker.broker_watch import BrokerWatchStep
from runqueue.worker.cron_scheduler import CronSchedulerStep
from runqueue.worker.due_runs import DueRunStep
from runqueue.worker.durability import persist
from runqueue.worker.fencing import EXIT_LEASE_LOST, LeaseLostError
from runqueue.worker.fleet import FleetStep
from runqueue.worker.maintenance import MaintenanceStep
from runqueue.worker.pool_recycle import PoolRecycleStep
from runqueue.worker.pool_stop import PoolStopStep
from runqueue.worker.task import RunTask
from runqueue.worker.webhook_delivery import WebhookStep

logger = logging.getLogger(__name__)
T = TypeVar("T")

OUTSIDE_CANCEL_WRITE_SECONDS = 2.0  # a foreign terminate's cancel record, at most


def _is_run_task(task: Any) -> bool:
    return isinstance(task, RunTask)


def _write(
    runtime: Runtime,
    run_id: str,
    what: str,
    operation: Callable[[], T],
    seconds: float | None = None,
) -> T:
    """One write of a signal handler about a run: a database outage is waited out with
    backoff (Settings.status_write_timeout unless `seconds`), never dropped."""
    return persist(
        operation,
        total_seconds=runtime.settings.status_write_timeout if seconds is None else seconds,
        what=what,
        extra={"run_id": run_id},
    )


def _finish(task: Any, runtime: Runtime, run_id: str, status: RunStatus, **fields: Any) -> bool:
    """Write a final status through the store, then publish the run it released."""

    def write() -> Any:
        if running.lease_lost(run_id):  # asked before every try: a retry may come late
            raise LeaseLostError(f"run {run_id} lost its lease")
        return runtime.store.finish_run(run_id, status, **fields)

    try:
        changed, effects = _write(runtime, run_id, f"status {status.value} of run {run_id}", write)
    except LeaseLostError:
        _fenced(run_id)
        return False
    # Celery's own task events report success, error and timeout; runqueue reports an
    # interrupt itself, with its action (interrupt or rollback) as the reason.
    apply_effects(task.app, runtime, effects, announce_ends=status is RunStatus.interrupted)
    if changed:
        logger.info("run %s -> %s", run_id, status.value, extra={"run_id": run_id})
    return changed


def _fenced(run_id: str) -> bool:
    """True if this process lost the run's lease: it writes no final status (the reaper, or
    the attempt after it, decides), and a pool child exits after the run."""
    if not running.lease_lost(run_id):
        return False
    logger.warning(
        "run %s: lease lost, no final status written (the reaper decides)",
        run_id,
        extra={"run_id": run_id, "action": "fence"},
    )
    sigterm.exit_after_fenced_run()
    return True


@signals.task_success.connect
def _on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if not _is_run_task(sender):
        return
    run_id = sender.request.id
    if _fenced(run_id):
        return
    runtime = runtime_of(sender.app)
    fields: dict[str, Any] = dict(token=running.token_of(run_id), worker=sender.request.hostname)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        error = f"result is not JSON: {exc}"
        _finish(
            sender, runtime, run_id, RunStatus.error, error=error, error_type="TypeError", **fields
        )
        return
    _finish(sender, runtime, run_id, RunStatus.success, result=result, **fields)


@signals.task_failure.connect
def _on_task_failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    if not _is_run_task(sender) or task_id is None or _fenced(task_id):
        return
    runtime = runtime_of(sender.app)
    end = functools.partial(_finish, sender, runtime, task_id)
    if isinstance(exception, PoolHandOffError):
        # Never claimed: it fails where it stands (pending), and no worker runs it again.
        error_type = type(exception).__name__
        end(RunStatus.error, error=describe(exception), error_type=error_type,
            from_statuses=(PENDING,))  # fmt: skip
        return
    fields: dict[str, Any] = dict(token=running.token_of(task_id))
    if fields["token"] is None and task_events.worker_node() is not None:
        # The main process, for a child it lost (or a hard time limit): no token, so fence
        # on the claim's worker. The run may have been handed back, or reaped and re-queued,
        # and claimed by another worker since: that attempt is not this worker's to end.
        fields["claimed_by"] = task_events.worker_node()
    error = describe(exception) if exception is not None else "unknown error"
    error_type = type(exception).__name__ if exception is not None else None
    if isinstance(exception, RunHandedBackError):
        return  # the worker shuts down: the run is pending again, for another worker
    if isinstance(exception, WorkerLostError) and f"exitcode {EXIT_LEASE_LOST}" in str(exception):
        # A child that stopped itself at its lease's end (fencing's hard stop): the reaper
        # decides how the run ends (error, or another attempt), and may already have
        # re-queued it for an attempt this worker claims again.
        return
    if isinstance(exception, RunCancelledError | Terminated):
        action = _write(
            runtime,
            task_id,
            f"reading the cancel of run {task_id}",
            lambda: runtime.store.abort_action(task_id),
        )
        if action is None:
            # SIGTERM that no cancel asked for and the run not handed back (no longer this
            # attempt's): the main process's WorkerLostError, or the lease reaper, ends it.
            return
        end(RunStatus.interrupted, detail=f"cancelled ({action})", **fields)
    elif isinstance(exception, SoftTimeLimitExceeded | TimeLimitExceeded):
        end(RunStatus.timeout, error=error, error_type=error_type, **fields)
    elif isinstance(exception, WorkerLostError):
        error = f"worker lost: {exception}"
        if not end(RunStatus.error, error=error, error_type=error_type, **fields):
            _lost_before_claim(sender, runtime, task_id, error)
    else:
        end(RunStatus.error, error=error, error_type=error_type, **fields)


def _lost_before_claim(task: Any, runtime: Runtime, run_id: str, error: str) -> None:
    """The pool child died and the run is not running under this worker's claim: if it is
    still queued, the child died before it claimed it. Count that against the run; at the
    bound the run ends `error` (a poison run), below it the relay publishes it again."""
    losses = _write(
        runtime,
        run_id,
        f"counting the lost delivery of run {run_id}",
        lambda: poison.record_lost_delivery(runtime, run_id),
    )
    if losses is not None and poison.is_poison(runtime, losses):
        reason = poison.dead_letter_reason(error, losses)
        _finish(task, runtime, run_id, RunStatus.error, error=reason, error_type="WorkerLostError",
                from_statuses=(PENDING,))  # fmt: skip


@signals.task_revoked.connect
def _on_task_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    if not _is_run_task(sender) or request is None:
        return
    if terminated:
        # The child is being stopped; it writes `interrupted` itself once its finally blocks
        # ran, so the thread's next run cannot start while this one still executes.
        _record_outside_cancel(sender, runtime_of(sender.app), request.id)
        return
    # Revoked before it started (the cancel reached the worker first): never executes.
    _finish(
        sender,
        runtime_of(sender.app),
        request.id,
        RunStatus.interrupted,
        detail="revoked",
        from_statuses=(PENDING,),
    )


def _record_outside_cancel(task: Any, runtime: Runtime, run_id: str) -> None:
    """A terminate runqueue did not send (Flower's Terminate, `celery control revoke`) is a
    cancel: record it (interrupt) unless one is recorded, so the child, which waits a moment
    for it after its SIGTERM, ends the run `interrupted` and the thread moves on. No revoke
    is sent: Celery already signalled the child."""
    cancelled, effects = _write(
        runtime,
        run_id,
        f"recording the terminate of run {run_id}",
        lambda: runtime.store.cancel_run(run_id, AbortAction.interrupt, uncancelled_only=True),
        # The consumer's own thread: a database outage must not stall it. Not recorded, the
        # child reads its SIGTERM as a shutdown and hands the run back (nothing is lost).
        seconds=OUTSIDE_CANCEL_WRITE_SECONDS,
    )
    effects.terminate.clear()
    apply_effects(task.app, runtime, effects)
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
            running.forget(task_id, sender.request)  # kept until now: the end is fenced too
        sigterm.task_finished()


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Relaying and reaping start and stop with the worker: add their bootstep before the
    worker builds its blueprint from app.steps["worker"] (worker_init comes just before)."""
    if getattr(sender.app, "runqueue", None) is not None:
        task_events.use_worker_hostname(sender.hostname)
        sender.app.steps["worker"].add(MaintenanceStep)
        sender.app.steps["worker"].add(CronSchedulerStep)  # crons: every worker races
        sender.app.steps["worker"].add(DueRunStep)  # delayed runs published when due
        sender.app.steps["worker"].add(FleetStep)  # readiness, the workers table, grace
        sender.app.steps["consumer"].add(BrokerWatchStep)  # republish what a broker lost
        sender.app.steps["worker"].add(PoolRecycleStep)  # cancelled runs' children
        sender.app.steps["worker"].add(PoolStopStep)  # the embedded pool's prompt stop
        sender.app.steps["worker"].add(WebhookStep)  # completion webhooks delivered

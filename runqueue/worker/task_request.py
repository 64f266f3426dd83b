"""The worker's Request for runs (main process): Celery's own task events, corrected where
runqueue knows better, so Flower shows each run's status (runqueue/celery/task_events.py).

- A run's result is hidden unless Settings.flower_payloads is on (the run's kwargs are
  hidden at publish, runqueue/celery/dispatch.py).
- A cancelled run is reported REVOKED, with its action, by the process that wrote
  `interrupted`; Celery's `task-failed` for it would override that, so it is not sent.
- A run handed back at shutdown is pending again: RETRY, which its next delivery replaces.
- A lost pool child may have ended its run (a cancel) before it died: the run's status, as
  the task_failure signal left it in the database, is reported instead of "worker lost".
- A run that failed is logged here, with its traceback: at WARNING when its assistant raised,
  at ERROR when runqueue's database, stream or broker failed it.
- A run that cannot be handed to a pool process (its kwargs nest too deep to pickle, or
  anything else the hand-off raises) fails alone: before this, the exception escaped into
  the worker's event loop and stopped the worker, and every worker it was redelivered to.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import Terminated, WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, TaskRevokedError
from celery.worker.request import Request

from runqueue.celery import task_events
from runqueue.celery.app import runtime_of
from runqueue.errors import (
    BrokerUnavailableError,
    DatabaseUnavailableError,
    PoolHandOffError,
    RunCancelledError,
    SchemaMissingError,
    StreamUnavailableError,
    describe,
)
from runqueue.records import MAX_JSON_DEPTH_CEILING
from runqueue.store import RunQueries
from runqueue.validation import nesting_over
from runqueue.worker.attempt import RunHandedBackError

logger = logging.getLogger(__name__)

# Ends that are no run error: a cancel, a SIGTERM, Celery's own retry and skip.
NOT_RUN_ERRORS = (RunCancelledError, Terminated, Retry, Ignore, Reject)
# Not logged by _log_run_error: no run error, or Celery logs it itself (ERROR, traceback).
NOT_LOGGED_HERE = (*NOT_RUN_ERRORS, PoolHandOffError)
# A run that failed because runqueue could not reach what it depends on.
OUTAGE_ERRORS = (
    DatabaseUnavailableError,
    SchemaMissingError,
    StreamUnavailableError,
    BrokerUnavailableError,
)


class RunRequest(Request):
    """A run's delivery, as the worker's main process tracks it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The worker runs a subclass that Celery makes of this one (create_request_cls),
        # with a faster execute_using_pool of its own: guard that one too.
        super().__init_subclass__(**kwargs)
        if "execute_using_pool" in cls.__dict__:
            cls.execute_using_pool = _guarded_hand_off(cls.__dict__["execute_using_pool"])

    def _hand_off_failed(self, reason: str) -> None:
        try:
            raise PoolHandOffError(f"run could not be handed to a pool process: {reason}")
        except PoolHandOffError:
            self.on_failure(ExceptionInfo(), send_failed_event=True, return_ok=False)

    def send_event(self, type: str, **fields: Any) -> None:  # noqa: A002 - Celery's name
        if type == "task-succeeded" and self._payloads() != "on":
            fields["result"] = task_events.PAYLOADS_HIDDEN
        super().send_event(type, **fields)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, RunHandedBackError):
            super().on_failure(exc_info, send_failed_event=False, return_ok=return_ok)
            task_events.send(
                self.task.app,
                "task-retried",
                self.id,
                exception="handed back at worker shutdown: pending again",
                traceback=None,
            )
            return None
        if isinstance(exc, RunCancelledError):
            send_failed_event = False  # the child reported `interrupted` (or nothing ended)
        elif isinstance(exc, WorkerLostError):
            result = super().on_failure(exc_info, send_failed_event=False, return_ok=return_ok)
            self._announce_from_database()
            return result
        elif isinstance(exc, Exception) and not isinstance(exc, NOT_LOGGED_HERE):
            self._log_run_error(exc, exc_info.traceback)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _log_run_error(self, exc: Exception, traceback: str | None) -> None:
        """An assistant's exception is its run's outcome (status `error`, or `timeout`), not
        the worker's failure: WARNING, with the traceback its author needs. Celery logs it at
        INFO only (RunTask.throws). A run failed by runqueue's own dependencies (database,
        stream, broker) is an ERROR: the fleet needs an operator."""
        level = logging.ERROR if isinstance(exc, OUTAGE_ERRORS) else logging.WARNING
        thread_id = self.args[0] if self.args else None
        logger.log(
            level,
            "run %s (%s) failed: %s\n%s",
            self.id,
            self.task.name,
            describe(exc),
            (traceback or "").rstrip(),
            extra={"run_id": self.id, "thread_id": thread_id, "action": "run_error"},
        )

    def _announce_from_database(self) -> None:
        try:
            run = RunQueries(runtime_of(self.task.app).store).get(self.id)
        except Exception as exc:  # a database blip: Flower keeps the run as it was
            logger.warning("could not read run %s for Flower: %s", self.id, exc)
            return
        if run is not None and run.status.is_final:
            task_events.announce_record(self.task.app, run)

    def _payloads(self) -> str:
        runtime = getattr(self.task.app, "runqueue", None)
        return runtime.settings.flower_payloads if runtime is not None else "off"


def _guarded_hand_off(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Celery's hand-off of a request to the pool, where what cannot be handed off fails
    that run alone (PoolHandOffError through on_failure: the message is acked, task_failure
    ends the run, Flower sees it failed) instead of stopping the worker: the pool pickles
    the request in the worker's main process, inside its event loop, whose exceptions are
    "unrecoverable" to Celery."""

    @functools.wraps(execute)
    def execute_using_pool(self: RunRequest, pool: Any, **kwargs: Any) -> Any:
        too_deep = nesting_over(self.kwargs, MAX_JSON_DEPTH_CEILING)
        if too_deep is not None:  # pickle would fail in the hand-off: never try it
            self._hand_off_failed(
                f"its kwargs nest {too_deep}+ levels deep (at most {MAX_JSON_DEPTH_CEILING})"
            )
            return None
        try:
            return execute(self, pool, **kwargs)
        except TaskRevokedError:
            raise
        except Exception as exc:  # whatever else the hand-off raises, this run alone fails
            _forget_pool_job(pool, self.id)
            self._hand_off_failed(describe(exc))
            return None

    return execute_using_pool


RunRequest.execute_using_pool = _guarded_hand_off(Request.execute_using_pool)


def _forget_pool_job(pool: Any, run_id: str) -> None:
    """A job the pool registered before its hand-off raised is never sent: drop it from the
    pool's cache of pending jobs (billiard's `_cache`), where it would wait for a result
    forever. Best effort: another pool keeps no such cache."""
    cache = getattr(getattr(pool, "_pool", None), "_cache", None)
    if not isinstance(cache, dict):
        return
    for job, result in list(cache.items()):
        if getattr(result, "correlation_id", None) == run_id:
            cache.pop(job, None)

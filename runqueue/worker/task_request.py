"""The worker's Request for runs (main process): Celery's own task events, corrected where
runqueue knows better, so Flower shows each run's status (runqueue/task_events.py).

- A run's result is hidden unless Settings.flower_payloads is on (the run's kwargs are
  hidden at publish, runqueue/dispatch.py).
- A cancelled run is reported REVOKED, with its action, by the process that wrote
  `interrupted`; Celery's `task-failed` for it would override that, so it is not sent.
- A run handed back at shutdown is pending again: RETRY, which its next delivery replaces.
- A lost pool child may have ended its run (a cancel) before it died: the run's status, as
  the task_failure signal left it in the database, is reported instead of "worker lost".
- A run that failed is logged here, with its traceback: at WARNING when its assistant raised,
  at ERROR when runqueue's database, stream or broker failed it.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import Terminated, WorkerLostError
from celery.exceptions import Ignore, Reject, Retry
from celery.worker.request import Request

from runqueue import task_events
from runqueue.app import runtime_of
from runqueue.errors import (
    BrokerUnavailableError,
    DatabaseUnavailableError,
    RunCancelledError,
    SchemaMissingError,
    StreamUnavailableError,
    describe,
)
from runqueue.store.queries import RunQueries
from runqueue.worker.execution import RunHandedBackError

logger = logging.getLogger(__name__)

# Ends that are no run error: a cancel, a SIGTERM, Celery's own retry and skip.
NOT_RUN_ERRORS = (RunCancelledError, Terminated, Retry, Ignore, Reject)
# A run that failed because runqueue could not reach what it depends on.
OUTAGE_ERRORS = (
    DatabaseUnavailableError,
    SchemaMissingError,
    StreamUnavailableError,
    BrokerUnavailableError,
)


class RunRequest(Request):
    """A run's delivery, as the worker's main process tracks it."""

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
        elif isinstance(exc, Exception) and not isinstance(exc, NOT_RUN_ERRORS):
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

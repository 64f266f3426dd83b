"""The runs this process executes now: each one's Execution (its claim token, its fence, how it
stops early), by run id, for the signal handlers that write the run's final status."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runqueue.errors import RunCancelledError
from runqueue.worker.durability import persist
from runqueue.worker.fencing import LeaseFence, LeaseLostError

T = TypeVar("T")


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
    write_timeout: float = 120.0  # Settings.status_write_timeout

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

    def log(self, action: str | None = None) -> dict[str, Any]:
        """The fields of every log line about this run."""
        fields = {"run_id": self.run_id, "thread_id": self.thread_id}
        return fields if action is None else {**fields, "action": action}

    def persist(
        self,
        operation: Callable[[], T],
        what: str,
        *,
        seconds: float | None = None,
        action: str | None = None,
    ) -> T:
        """One of this attempt's writes, waiting out a database outage for `seconds` (the
        write timeout unless told), logged with the run's fields."""
        return persist(
            operation,
            total_seconds=self.write_timeout if seconds is None else seconds,
            what=what,
            extra=self.log(action),
        )


_executions: dict[str, Execution] = {}  # run_id -> execution, in this process


def register(execution: Execution) -> None:
    """From the claim until task_postrun: the final status is fenced too."""
    _executions[execution.run_id] = execution


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

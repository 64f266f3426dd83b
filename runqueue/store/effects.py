"""What the store decides and hands back: a validated request for a run, the runs that
ended, and the effects a committed transaction leaves for the broker and the run stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runqueue.errors import ConflictError
from runqueue.records import MultitaskStrategy, RunRecord, RunStatus


@dataclass(frozen=True)
class NewRun:
    """A validated request for a run, before it is written."""

    run_id: str
    thread_id: str
    assistant_id: str
    user_id: str | None
    multitask_strategy: MultitaskStrategy | None
    on_disconnect: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    follow_up_to_run_id: str | None
    create_thread: bool = True  # False: ThreadNotFoundError unless the thread exists
    own_thread: bool = False  # True: ThreadNotFoundError if the thread is another user's
    webhook: str | None = None  # checked (runqueue.webhooks.check_url); POSTed once final
    after_seconds: float | None = None  # a delayed run: due this long after its creation


@dataclass(frozen=True)
class RunEnding:
    """A run that reached its final status in this transaction: its stream gets `end`."""

    run_id: str
    status: RunStatus
    error: str | None = None
    error_type: str | None = None  # the exception's class name, for the stream's `error`
    detail: str | None = None  # why, as the run's history says it: "cancelled (rollback)"


@dataclass
class Effects:
    """What must reach the broker and the run stream once the transaction that decided it
    has committed."""

    publish: list[RunRecord] = field(default_factory=list)  # runs to publish
    # (run id, the worker that claimed it) to revoke(terminate=True), sent to that worker
    terminate: list[tuple[str, str | None]] = field(default_factory=list)
    ended: list[RunEnding] = field(default_factory=list)  # streams to end


def thread_busy(thread_id: str, run_id: str, status: str) -> ConflictError:
    """The refusal of the reject strategy: the thread's oldest run in flight, named."""
    return ConflictError(f"thread {thread_id} already has an active run ({run_id}, {status})")

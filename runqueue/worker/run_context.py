"""What an assistant's body gets: RunContext, its run's checkpoints, events and cancel checks.

An assistant is a Celery task whose body takes a RunContext first:

    @assistant(app)
    def chat(context, prompt): ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runqueue.errors import DatabaseUnavailableError, EventTooLargeError, RunCancelledError
from runqueue.store import RunStore
from runqueue.stream import RunStream
from runqueue.worker.fencing import LeaseLostError
from runqueue.worker.running import Execution
from runqueue.worker.sigterm import _statement
from runqueue.worker.stream_writer import StreamWriter

T = TypeVar("T")

CANCEL_POLL_SECONDS = 0.25  # how often context.cancelled() may ask the database


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
        self._put(event, self._stream.encode(event, data))

    def emit_or_leave_out(self, event: str, data: Any, *, read: str) -> EventTooLargeError | None:
        """emit(), except that an event over Settings.stream_max_event_bytes is not refused:
        a `gap` takes its place in the stream, naming the event, its size, the limit and
        `read` (where its whole value can be read), so that every reader learns, in order,
        what it misses. Returns the refusal when the event was left out, else None."""
        self._execution.ensure_lease()
        try:
            text = self._stream.encode(event, data)
        except EventTooLargeError as too_large:
            self._put(*self._stream.left_out(too_large, read))
            return too_large
        self._put(event, text)
        return None

    def _put(self, event: str, text: str) -> None:
        """One encoded event to the attempt's stream writer."""
        try:
            self._writer.put(event, text)
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
        """A write from the assistant's thread: a cancel's SIGTERM waits for it (_statement)."""
        return self._execution.persist(
            lambda: _statement(operation), what, seconds=self._write_timeout
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

"""An attempt's events on their way to the run stream: emit() queues, one thread writes
(started by the first event).

A round trip per event would cap a token-streaming assistant at what one connection does in
series (about 11,000 appends/s to a local Redis). So context.emit() checks the event and
queues it; this thread sends everything queued since its last write as one fenced append (a
group commit), in order. A refusal (the run ended, a newer attempt owns it) is kept and
raised as RunCancelledError by the next emit(): the assistant stops at its next event, as it
does at a refused checkpoint. close() runs before the run's final status is written, so every
event an attempt emitted precedes its stream's `end`.

Each append first asks the attempt's lease fence (fencing.py), without I/O: once this worker
lost the run's lease, nothing more is written, even by a process that just resumed from a
pause, and the next emit() raises LeaseLostError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from runqueue.errors import RunCancelledError
from runqueue.stream import Appended, AppendOutcome, RunStream
from runqueue.worker.durability import persist
from runqueue.worker.fencing import LeaseFence, LeaseLostError

logger = logging.getLogger(__name__)

MAX_BATCH = 1000  # events per append
MAX_PENDING = 10_000  # emit() waits while this many are queued (back-pressure)
FENCE_CHECK_SECONDS = 0.25  # flush() waiting on a hung append asks the fence this often


class StreamWriter(threading.Thread):
    """Writes one attempt's events, in order, in batches."""

    def __init__(
        self,
        stream: RunStream,
        *,
        run_id: str,
        thread_id: str,
        token: str,
        attempt: int,
        still_owner: Callable[[], bool],
        write_timeout: float,
        fence: LeaseFence | None = None,
    ):
        super().__init__(name=f"runqueue-stream-{run_id}", daemon=True)
        self.stream, self.run_id, self.thread_id = stream, run_id, thread_id
        self.token, self.attempt = token, attempt
        self.still_owner, self.write_timeout = still_owner, write_timeout
        self.fence = fence
        self.last_seq = 0  # the number of the last event written
        self.log = {"run_id": run_id, "thread_id": thread_id}
        self._pending: deque[tuple[str, str]] = deque()
        self._changed = threading.Condition()
        self._writing = False
        self._closed = False
        self._touch = False  # keep_alive() asked for a touch of the stream
        self.refused: AppendOutcome | None = None  # why the stream took no more
        self.failure: BaseException | None = None  # the store stayed unreachable
        self._writing_started = False  # the thread starts with the first event (or touch)

    def open(self) -> None:
        """Take the stream for this attempt (its `metadata`), then start writing. Refused
        (the run ended, or a later attempt opened it): RunCancelledError."""
        opened = self._persist(
            lambda: self.stream.open(
                self.run_id, self.token, thread_id=self.thread_id, attempt=self.attempt
            )
        )
        if not opened.written:
            self.refused = opened.outcome
            self._raise_if_stopped()
        self.last_seq = opened.seq

    def _start_writing(self) -> None:
        """Start the thread on first need (lock held): a run that emits nothing and ends
        before its first heartbeat, the common no-op or short run, never starts one."""
        if not self._writing_started:
            self._writing_started = True
            self.start()

    def put(self, event: str, data: str) -> None:
        """Queue one checked event (JSON text); RunCancelledError once the stream refused."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._pending) < MAX_PENDING or self._stopped)
            self._raise_if_stopped()
            self._pending.append((event, data))
            self._start_writing()
            self._changed.notify_all()

    def keep_alive(self) -> None:
        """Ask this thread to touch the stream (keep a quiet run's stream alive). The lease's
        heartbeat calls it: a stream store that hangs (partitioned) must not stall the
        renewals, or the run would be fenced while its database is fine."""
        with self._changed:
            self._touch = True
            self._start_writing()
            self._changed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is written (or refused); False on timeout, or once
        the lease is lost (what is queued then is never written)."""
        end = time.monotonic() + timeout
        with self._changed:
            while (self._pending or self._writing) and not self._stopped:
                left = end - time.monotonic()
                if left <= 0 or self._lease_lost():
                    return False
                self._changed.wait(min(left, FENCE_CHECK_SECONDS))
            return True

    def close(self, timeout: float) -> None:
        """Write what is queued, then stop the thread."""
        if not self.flush(timeout):
            unwritten = len(self._pending)
            if self._lease_lost():
                logger.warning(
                    "run %s: lease lost, %d queued events not written",
                    self.run_id,
                    unwritten,
                    extra=self.log,
                )
            else:
                logger.error(
                    "run %s: %d events unwritten after %gs",
                    self.run_id,
                    unwritten,
                    timeout,
                    extra=self.log,
                )
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def _stopped(self) -> bool:
        return self.refused is not None or self.failure is not None

    def _lease_lost(self) -> bool:
        return self.fence is not None and self.fence.expired()

    def _raise_if_stopped(self) -> None:
        if self.refused is not None:
            raise RunCancelledError(
                f"run {self.run_id} no longer owns its stream ({self.refused.value})"
            )
        if self.failure is not None:
            raise self.failure

    def run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed or self._touch)
                touch = self._touch and not self._pending and not self._closed
                self._touch = self._touch and not touch
                if not touch:
                    if not self._pending:
                        return
                    count = min(len(self._pending), MAX_BATCH)
                    batch = [self._pending.popleft() for _ in range(count)]
                    self._writing = True
            if touch:
                self._keep_stream()
                continue
            try:
                appended, failure = self._write(batch), None
            except LeaseLostError as exc:  # the fence: this batch and the rest stay unwritten
                appended, failure = None, exc
                logger.warning(
                    "run %s: lease lost, %d events not written",
                    self.run_id,
                    len(batch) + len(self._pending),
                    extra=self.log,
                )
            except Exception as exc:  # persist gave up: the store stayed unreachable
                appended, failure = None, exc
            with self._changed:
                self._writing = False
                if failure is not None:
                    self.failure = failure
                elif appended is not None and not appended.written:
                    self.refused = appended.outcome
                elif appended is not None:
                    self.last_seq = appended.seq
                if self._stopped:
                    self._pending.clear()
                self._changed.notify_all()
                if self._stopped:
                    return

    def _keep_stream(self) -> None:
        if self._lease_lost():
            return
        try:
            self.stream.touch(self.run_id)
        except Exception as exc:  # the stream's store is down: the next beat asks again
            logger.warning(
                "stream keep-alive failed for run %s: %s", self.run_id, exc, extra=self.log
            )

    def _write(self, batch: list[tuple[str, str]]) -> Appended:
        appended = self._persist(lambda: self.stream.append(self.run_id, self.token, batch))
        if appended.outcome is AppendOutcome.missing and self._reopen():
            appended = self._persist(lambda: self.stream.append(self.run_id, self.token, batch))
        return appended

    def _reopen(self) -> bool:
        """The stream vanished under a running run (Redis restarted without persistence):
        if the database, which decides, says this attempt still owns the run, recreate it
        numbering on after this attempt's last event (readers then see a `gap`)."""
        if not self._persist(self.still_owner):
            return False
        self._persist(
            lambda: self.stream.reopen(self.run_id, self.token, self.attempt, self.last_seq)
        )
        return True

    def _persist(self, operation: Callable[[], Any]) -> Any:
        """`operation` through persist, the fence asked before every try."""
        if self.fence is not None:
            operation = self.fence.guard(operation)
        return persist(
            operation,
            total_seconds=self.write_timeout,
            what=f"events of run {self.run_id}",
            extra=self.log,
        )

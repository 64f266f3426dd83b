"""What a run-stream transport does: only the I/O. Ids, JSON, reserved names and the reader's
cursor live above it (events.py, reader.py), once for every transport.

A stream is a sequence of entries numbered 1, 2, 3, ... with no hole. Its head records the
attempt allowed to append (the claim token) and, once written, the run's final status. Every
append checks both in one atomic step on the server (a Lua script, a guarded UPDATE), so a
late writer can never add to a stream that ended or that a newer attempt owns.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass


class AppendOutcome(enum.StrEnum):
    """What became of an append."""

    appended = "appended"  # written
    ended = "ended"  # refused: the stream has its `end`
    not_owner = "not_owner"  # refused: another attempt owns the stream
    missing = "missing"  # refused: no stream (deleted, or lost by a Redis restart)


@dataclass(frozen=True)
class Appended:
    """An append's outcome and, when written, the entry's number."""

    outcome: AppendOutcome
    seq: int = 0

    @property
    def written(self) -> bool:
        return self.outcome is AppendOutcome.appended


@dataclass(frozen=True)
class Entry:
    """One stored event: its number in the stream, name, and JSON text."""

    seq: int
    event: str
    data: str


class AsyncReader(abc.ABC):
    """Reads for one asyncio consumer, on connections of its own event loop."""

    @abc.abstractmethod
    async def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        """StreamTransport.read(), awaited."""

    @abc.abstractmethod
    async def last_seq(self, run_id: str) -> int | None:
        """StreamTransport.last_seq(), awaited."""

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the reader's connections."""


class StreamTransport(abc.ABC):
    """One store of run streams (Redis Streams, or a table in the database)."""

    def __init__(self, url: str, *, retention_seconds: float, max_events: int):
        self.url = url
        self.retention_seconds = retention_seconds
        self.max_events = max_events

    @abc.abstractmethod
    def open(self, run_id: str, token: str, attempt: int, event: str, data: str) -> Appended:
        """Make `token` the stream's owner and append its first event (the attempt's
        `metadata`). Refused if the stream ended, or if an attempt numbered `attempt` or
        later already opened it (a late open never takes the stream from a newer one)."""

    @abc.abstractmethod
    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        """Append events (name, JSON text), all or none, if `token` owns the stream and it
        has not ended. Appended.seq is the number of the last one."""

    def reopen(self, run_id: str, token: str, attempt: int, after_seq: int) -> bool:
        """Recreate a stream the store lost while its run was running (Redis restarted
        without persistence), owned by `token` (of `attempt`) and numbering on after
        `after_seq`, so that readers see a `gap`. False if the stream exists; a store that
        keeps its streams never loses one."""
        return False

    @abc.abstractmethod
    def seal(
        self, run_id: str, status: str, entries: list[tuple[str, str]], *, create: bool
    ) -> bool:
        """Append `entries` (the last is `end`), mark the stream ended with `status` and start
        its retention, all at once. False if it had already ended, or (create=False) does not
        exist; create=True starts a stream for a run that ends before it ever started."""

    @abc.abstractmethod
    def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        """Up to `count` entries numbered above `after`, oldest first. When there are none,
        wait up to `block` seconds for one (0: do not wait)."""

    @abc.abstractmethod
    def async_reader(self) -> AsyncReader:
        """A reader for one asyncio consumer: read() without holding a thread while it
        waits. Close it when done."""

    def touch(self, run_id: str) -> None:  # noqa: B027 - a store that keeps streams
        """A running run's stream is alive: where the store expires keys, push the expiry of
        a stream that has not ended out again (see RedisStreamTransport.touch)."""

    @abc.abstractmethod
    def last_seq(self, run_id: str) -> int | None:
        """The number of the stream's newest entry (0: none yet); None if the stream does not
        exist (never written, expired, or deleted)."""

    @abc.abstractmethod
    def delete(self, run_id: str) -> None:
        """Forget the stream (its run's record was deleted)."""

    def purge_expired(self) -> int:
        """Delete streams past their retention, where the store does not expire them itself."""
        return 0

    def close(self) -> None:  # noqa: B027 - most transports hold nothing to release
        """Release connections."""

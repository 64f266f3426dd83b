"""Run streams in the project's database: the embedded default (SQLite), or any deployment
whose broker is not Redis.

The head row (run_streams) is the fence: every append is one guarded UPDATE of it that takes
the next number only if the token owns the stream and it has not ended, then the INSERT of
the event, in one transaction (runqueue.store.stream_rows holds the statements). Readers
poll (Settings.stream_poll_interval): SQLite has no notification to wait on. Retention is an
expiry on the head row; readers treat an expired stream as gone at once, and the maintenance
pass deletes it.
"""

from __future__ import annotations

import asyncio
import time

from runqueue.store import StreamRefusal, StreamRows
from runqueue.stream.transport import (
    Appended,
    AppendOutcome,
    AsyncReader,
    Entry,
    StreamTransport,
)


def _appended(written: int | StreamRefusal) -> Appended:
    if isinstance(written, StreamRefusal):
        return Appended(AppendOutcome[written.value])
    return Appended(AppendOutcome.appended, written)


class SqlStreamTransport(StreamTransport):
    """Run streams in the database at `url` (the one the runs live in)."""

    def __init__(
        self,
        url: str,
        *,
        retention_seconds: float,
        max_events: int,
        poll_interval: float = 0.05,
        pool_size: int = 15,
    ):
        super().__init__(url, retention_seconds=retention_seconds, max_events=max_events)
        self.poll_interval = poll_interval
        # The process's one engine for the URL, so whichever is made first, the pool is the
        # one settings size.
        self._rows = StreamRows(url, max_events=max_events, pool_size=pool_size)

    def open(self, run_id: str, token: str, attempt: int, event: str, data: str) -> Appended:
        return _appended(self._rows.open(run_id, token, attempt, (event, data)))

    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        return _appended(self._rows.append(run_id, token, entries))

    def seal(
        self, run_id: str, status: str, entries: list[tuple[str, str]], *, create: bool
    ) -> bool:
        return self._rows.seal(
            run_id, status, entries, create=create, retention_seconds=self.retention_seconds
        )

    def read_now(self, run_id: str, after: int, count: int) -> list[Entry]:
        """What is there now, without waiting."""
        return [
            Entry(seq=seq, event=event, data=data)
            for seq, event, data in self._rows.entries(run_id, after, count)
        ]

    def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        deadline = time.monotonic() + block
        while True:
            entries = self.read_now(run_id, after, count)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            time.sleep(min(self.poll_interval, remaining))

    def async_reader(self) -> AsyncReader:
        return SqlAsyncReader(self)

    def last_seq(self, run_id: str) -> int | None:
        return self._rows.last_seq(run_id)

    def delete(self, run_id: str) -> None:
        self._rows.delete(run_id)

    def purge_expired(self) -> int:
        """Delete streams past their retention, and streams that never got their `end` once
        their run has been final for longer than the retention, or was deleted."""
        return self._rows.purge_expired(self.retention_seconds)


class SqlAsyncReader(AsyncReader):
    """Polls in a worker thread, sleeping on the event loop between looks."""

    def __init__(self, transport: SqlStreamTransport):
        self.transport = transport

    async def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        deadline = time.monotonic() + block
        while True:
            entries = await asyncio.to_thread(self.transport.read_now, run_id, after, count)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            await asyncio.sleep(min(self.transport.poll_interval, remaining))

    async def last_seq(self, run_id: str) -> int | None:
        return await asyncio.to_thread(self.transport.last_seq, run_id)

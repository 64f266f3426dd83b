"""Following a run's stream: replay and live reading as one cursor, so nothing is lost or
doubled between them, and a reader always finishes.

The reader blocks on the transport (XREAD BLOCK on Redis), never polling Redis. Only when the
stream has been silent for IDLE_CHECK_SECONDS does it ask the database whether the run ended:
- still running or pending: wait again (a quiet run's stream never expires);
- ended, and the stream is gone (past its retention): `gap` if this reader had a position,
  then the run's `end`, at once;
- ended, and the stream lacks its `end` (the process that wrote the final status died before
  it reached the stream): after one more short wait, the reader writes the `end` itself. The
  seal is fenced like every other write, so a late original `end` is refused, never doubled.

The decisions are written once (Follower); follow() and afollow() only do the waiting.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable, Iterator

from runqueue.records import RunRecord, StreamEvent
from runqueue.stream import events
from runqueue.stream.transport import Entry, StreamTransport

IDLE_CHECK_SECONDS = 2.0  # a silent stream: ask the database whether the run ended
REPAIR_GRACE_SECONDS = 0.5  # ended in the database, no `end` yet: wait this long, then write it
BATCH = 500  # entries per read

RunOf = Callable[[], RunRecord]  # the run as the database has it now (RunNotFoundError if gone)


class Step(enum.Enum):
    """What a reader does after a silent wait on a run that has ended."""

    grace = "grace"  # wait a little more: the `end` may be on its way
    repair = "repair"  # write the missing `end`; if it was there, the reader is past it
    gone = "gone"  # the stream expired (or what it numbers is no longer there)


class Follower:
    """One reader's position and decisions, whatever the transport and the concurrency."""

    def __init__(self, after: int | None):
        self.last = after or 0  # the last number this reader has (0: none)
        self.block = 0.0  # how long the next read may wait
        self.done = False
        self._suspect = False  # saw the run ended with no `end` in the stream once already

    def received(self, entries: list[Entry]) -> list[StreamEvent]:
        """Entries read after `last`, as events; a hole before the first one is a `gap`."""
        out = []
        if entries[0].seq > self.last + 1:
            out.append(events.gap(self.last, entries[0].seq))
        for entry in entries:
            out.append(events.decode(entry))
            self.last = entry.seq
            if entry.event == "end":
                self.done = True
                break
        self.block, self._suspect = IDLE_CHECK_SECONDS, False
        return out

    def running(self) -> None:
        """The run has not ended: wait for its next event."""
        self.block, self._suspect = IDLE_CHECK_SECONDS, False

    def ended(self, last_seq: int | None) -> Step:
        """The run has ended and the read found nothing new; `last_seq`: the stream's newest
        number (None: no stream)."""
        if last_seq is None:
            return Step.gone
        if not self._suspect:
            # Look once more: right away if something was written since the read, else after
            # a grace (the `end` follows the final status by a round trip).
            self._suspect = True
            self.block = 0.0 if last_seq > self.last else REPAIR_GRACE_SECONDS
            return Step.grace
        if last_seq > self.last:  # numbered, yet not there to read (deleted): nothing more
            return Step.gone
        return Step.repair

    def finish(self, run: RunRecord, *, lost: bool) -> list[StreamEvent]:
        """The run ended and its stream has nothing more for this reader: its final `end`,
        after a `gap` if events this reader had not read are gone (`lost`; a reader with no
        position, after=None, gets the `end` alone). A reader resuming after the `end`
        itself lost nothing: it gets the `end` again."""
        self.done = True
        out = [events.gap(self.last, None)] if lost and self.last > 0 else []
        return [*out, events.expired_end(run.status)]


def _repair(transport: StreamTransport, run_id: str, run: RunRecord) -> bool:
    return transport.seal(
        run_id, run.status.value, events.ending(run.status, run.error), create=False
    )


def follow(
    transport: StreamTransport, run_id: str, after: int | None, run_of: RunOf
) -> Iterator[StreamEvent]:
    """Every event after `after`, as they come, through the run's `end`."""
    follower = Follower(after)
    while not follower.done:
        entries = transport.read(run_id, follower.last, block=follower.block, count=BATCH)
        if entries:
            yield from follower.received(entries)
            continue
        run = run_of()
        if not run.is_final:
            follower.running()
            continue
        step = follower.ended(transport.last_seq(run_id))
        if step is Step.repair and _repair(transport, run_id, run):
            continue  # the `end` is written now: read it
        if step is not Step.grace:
            yield from follower.finish(run, lost=step is Step.gone)


async def afollow(
    transport: StreamTransport, run_id: str, after: int | None, run_of: RunOf
) -> AsyncIterator[StreamEvent]:
    """follow(), waiting without holding a thread."""
    follower = Follower(after)
    reader = transport.async_reader()
    try:
        while not follower.done:
            entries = await reader.read(run_id, follower.last, block=follower.block, count=BATCH)
            if entries:
                for event in follower.received(entries):
                    yield event
                continue
            run = await asyncio.to_thread(run_of)
            if not run.is_final:
                follower.running()
                continue
            step = follower.ended(await reader.last_seq(run_id))
            if step is Step.repair and await asyncio.to_thread(_repair, transport, run_id, run):
                continue
            if step is not Step.grace:
                for event in follower.finish(run, lost=step is Step.gone):
                    yield event
    finally:
        await reader.close()


def wait_for_end(
    transport: StreamTransport, run_id: str, run_of: RunOf, timeout: float
) -> RunRecord:
    """The run once it has ended: woken by its stream's `end`, with a look at the database
    whenever the stream stays silent. TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    run = run_of()
    last = transport.last_seq(run_id) or 0
    while not run.is_final:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(run, timeout)
        entries = transport.read(
            run_id, last, block=min(remaining, IDLE_CHECK_SECONDS), count=BATCH
        )
        if entries:
            last = entries[-1].seq
            if entries[-1].event != "end":
                continue
        run = run_of()
    return run


async def await_end(
    transport: StreamTransport, run_id: str, run_of: RunOf, timeout: float
) -> RunRecord:
    """wait_for_end(), waiting without holding a thread."""
    deadline = time.monotonic() + timeout
    run = await asyncio.to_thread(run_of)
    reader = transport.async_reader()
    try:
        last = await reader.last_seq(run_id) or 0
        while not run.is_final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(run, timeout)
            block = min(remaining, IDLE_CHECK_SECONDS)
            entries = await reader.read(run_id, last, block=block, count=BATCH)
            if entries:
                last = entries[-1].seq
                if entries[-1].event != "end":
                    continue
            run = await asyncio.to_thread(run_of)
    finally:
        await reader.close()
    return run


def _timeout(run: RunRecord, timeout: float) -> TimeoutError:
    return TimeoutError(f"run {run.run_id} still {run.status.value} after {timeout}s")

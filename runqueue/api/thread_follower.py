"""A thread's runs followed as one stream (GET /threads/{thread_id}/stream): each run's
events through its end, then the next run's, for as long as the client stays.

Order: a thread executes one run at a time, and its runs start in creation order (the
database enforces both), so following them one after the other, in creation order, gives
every event in the order it was written. Each run is read with the run stream's own reader
(RunManager.stream), so replay and live reading are one cursor, as for a run's stream.

Ids: every event's id names its run and its place in that run's stream, `<run_id>:<n>`; a
run's end is sent as the reference sends it, `metadata {"status": "run_done", "run_id"}`,
with the id `<run_id>:done`. Last-Event-ID therefore resumes exactly: the rest of that run,
then the runs created after it. Without one (or with the reference's "-", "from the
start"), the stream starts at the first event of the oldest run in flight, else with the
next run the thread gets.

Waiting for a next run: a run's reader waits on its stream, but nothing announces a run that
does not exist yet. Once the thread's last run has ended, the thread's runs are read every
NEXT_RUN_POLL_SECONDS, one indexed query, and whether the thread still exists every
THREAD_CHECK_POLLS reads: a deleted thread's stream ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from runqueue import validation
from runqueue.errors import InvalidCursorError, RunNotFoundError, ThreadNotFoundError
from runqueue.records import RunRecord, RunStatus, StreamEvent
from runqueue.registry import RunManager

NEXT_RUN_POLL_SECONDS = 1.0  # how soon a new run of an idle thread is seen
THREAD_CHECK_POLLS = 10  # idle polls between two checks that the thread still exists
PAGE = 100  # runs per listing while looking for the next ones
MAX_INFLIGHT = 1000  # runs in flight read at the start, per status (users have a bound: 100)
DONE = "done"  # the place of a run's `run_done` in an id
FROM_THE_START = "-"  # the reference's Last-Event-ID for "everything kept"
RUN_MODES, LIFECYCLE, STATE_UPDATE = "run_modes", "lifecycle", "state_update"
THREAD_STREAM_MODES = (RUN_MODES, LIFECYCLE, STATE_UPDATE)  # the reference's, its default first


@dataclass(frozen=True)
class Position:
    """Where a reader of a thread's stream is: after event `after` of run `run_id` (None:
    before its first), or past the run's end (`done`)."""

    run_id: str
    after: int | None = None
    done: bool = False


def position(last_event_id: str | None) -> Position | None:
    """A Last-Event-ID as a position; None for none (or "-"). InvalidCursorError (422) for an
    id no thread stream gives."""
    if not last_event_id or last_event_id == FROM_THE_START:
        return None
    run_id, _, place = last_event_id.partition(":")
    if validation.is_run_id(run_id) and place == DONE:
        return Position(run_id.lower(), done=True)
    if validation.is_run_id(run_id) and place.isascii() and place.isdigit() and len(place) < 19:
        return Position(run_id.lower(), after=int(place))
    raise InvalidCursorError(
        f"invalid Last-Event-ID {validation.shown(last_event_id)}: a thread stream's ids are "
        "'<run_id>:<n>' or '<run_id>:done'"
    )


def run_done(run_id: str) -> StreamEvent:
    """What stands for a run's `end` in its thread's stream, as the reference sends it (an
    `end` would tell the SDKs that the stream itself is over)."""
    data = {"status": "run_done", "run_id": run_id}
    return StreamEvent(id=f"{run_id}:{DONE}", event="metadata", data=data)


def wanted(event: StreamEvent, modes: frozenset[str]) -> bool:
    """An event of the thread stream modes asked for: `run_modes`, the runs' events;
    `lifecycle`, only the `metadata` of a run's attempts and ends; `state_update`, the
    thread's state updates (runqueue sends none)."""
    if RUN_MODES in modes:
        return True
    if LIFECYCLE not in modes or event.event != "metadata" or not isinstance(event.data, dict):
        return False
    return event.data.get("status") == "run_done" or "attempt" in event.data


IsNext = Callable[[RunRecord], bool]  # whether a run comes after those already followed


def _order(run: RunRecord) -> tuple[object, str]:
    return run.created_at, run.run_id


def _later_than(last: RunRecord) -> IsNext:
    return lambda run: _order(run) > _order(last)


def _any_run(_run: RunRecord) -> bool:
    return True


class ThreadFollower:
    """One reader of a thread's stream: its runs, in order, from `start` (None: see the module's
    docstring), for as long as it is read."""

    def __init__(
        self, manager: RunManager, thread_id: str, user: str | None, start: Position | None
    ):
        self.manager = manager
        self.thread_id = thread_id
        self.user = user
        self.start = start

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Every event of the thread's runs from the start, with thread-stream ids; ends only
        if the thread is deleted (or a run's stream cannot be read: RunQueueError)."""
        runs, after, is_next = await self._first_runs()
        while True:
            for run in runs:
                async for event in self._follow(run.run_id, after.pop(run.run_id, None)):
                    yield event
            if runs:
                is_next = _later_than(runs[-1])
            runs = await self._next_runs(is_next)

    async def _follow(self, run_id: str, after: int | None) -> AsyncIterator[StreamEvent]:
        """One run's events after `after`, then its `run_done`; nothing if it was deleted."""
        try:
            async for event in self.manager.stream(run_id, after=after):
                if event.event == "end":
                    yield run_done(run_id)
                    return
                event_id = None if event.id is None else f"{run_id}:{event.id}"
                yield StreamEvent(id=event_id, event=event.event, data=event.data)
        except RunNotFoundError:  # deleted (with its stream) before it was read
            return

    async def _first_runs(self) -> tuple[list[RunRecord], dict[str, int | None], IsNext]:
        """The runs to follow first (oldest first), where to start in the first one, and which
        runs come next if there are none."""
        start = self.start
        if start is None:
            newest = await self._listing(limit=1)  # before the runs in flight: none is missed
            inflight = await self._inflight()
            if inflight:
                oldest = min(inflight, key=_order)
                later = await self._listing_while(_later_than(oldest))
                return [oldest, *later], {}, _later_than(oldest)
            is_next = _later_than(newest[0]) if newest else _any_run
            return await self._listing_while(is_next), {}, is_next
        run = await self.manager.get(start.run_id, user_id=self.user)
        if run is None or run.thread_id != self.thread_id:  # deleted since: go on after it

            def is_next(other: RunRecord) -> bool:
                return other.run_id > start.run_id

            return await self._listing_while(is_next), {}, is_next
        later = await self._listing_while(_later_than(run))
        if start.done:
            return later, {}, _later_than(run)
        return [run, *later], {run.run_id: start.after}, _later_than(run)

    async def _next_runs(self, is_next: IsNext) -> list[RunRecord]:
        """The runs `is_next` takes, once there is one: read every NEXT_RUN_POLL_SECONDS.
        ThreadNotFoundError once the thread is gone."""
        polls = 0
        while True:
            runs = await self._listing_while(is_next)
            if runs:
                return runs
            polls += 1
            if polls % THREAD_CHECK_POLLS == 0:
                view = await self.manager.get_thread(self.thread_id, user_id=self.user)
                if view is None:
                    raise ThreadNotFoundError(f"thread {self.thread_id} was deleted")
            await asyncio.sleep(NEXT_RUN_POLL_SECONDS)

    async def _inflight(self) -> list[RunRecord]:
        """The thread's runs pending or running: pending read first, so that a run that
        starts in between is read as running."""
        found = []
        for status in (RunStatus.pending, RunStatus.running):
            found += await self.manager.list_by_thread(
                self.thread_id, user_id=self.user, status=status, limit=MAX_INFLIGHT
            )
        return found

    async def _listing(self, *, limit: int, offset: int = 0) -> list[RunRecord]:
        return await self.manager.list_by_thread(
            self.thread_id, user_id=self.user, limit=limit, offset=offset
        )

    async def _listing_while(self, is_next: IsNext) -> list[RunRecord]:
        """The thread's runs `is_next` takes, oldest first: read newest first, page by page,
        up to the first run it does not take (runs are listed in the order they run)."""
        found: dict[str, RunRecord] = {}
        offset = 0
        while True:
            page = await self._listing(limit=PAGE, offset=offset)
            taken = [run for run in page if is_next(run)]
            found.update((run.run_id, run) for run in taken)
            if len(taken) < len(page) or len(page) < PAGE:
                return sorted(found.values(), key=_order)
            offset += PAGE

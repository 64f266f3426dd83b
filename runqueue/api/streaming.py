"""A run's stream as server-sent events, with sse-starlette.

Framing: every frame has `event:`, `data:` (JSON) and `id:` (the run stream's number; 0 for
the API's `metadata`); a reconnect sends it back as Last-Event-ID and resumes after it. A
fresh stream starts with `metadata`, sent by the API at once so that a client sees it before
a queued run starts (the worker's own per-attempt `metadata` events are not repeated), and
ends with `end`. A comment line every PING_SECONDS keeps proxies from closing a silent
stream.

Disconnects: sse-starlette listens for the transport's `http.disconnect` while the stream is
idle, so a client that goes away is noticed at once, not at the next event. A run with
on_disconnect=cancel is then cancelled. A client that stays connected is never taken for
gone, however long the run is silent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from runqueue.errors import RunQueueError
from runqueue.records import RESERVED_EVENTS, AbortAction, RunRecord, StreamEvent
from runqueue.registry import RunManager

logger = logging.getLogger(__name__)

PING_SECONDS = 15.0
METADATA_ID = "0"  # the run stream numbers its own events from 1


def sse_frame(event: str, data: Any, event_id: str | None) -> ServerSentEvent:
    """One event as SSE, its data compact JSON (the run stream's and the thread stream's)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return ServerSentEvent(data=text, event=event, id=event_id)


def _wanted(event: StreamEvent, modes: set[str]) -> bool:
    """An event of one of `modes` (`updates`, or a subgraph's `updates|ns`), or runqueue's;
    a `gap` standing for a left-out event only if that event was wanted."""
    name = event.event
    if name == "gap" and isinstance(event.data, dict) and "left_out" in event.data:
        name = event.data["left_out"]["event"]
    return name in RESERVED_EVENTS or name.split("|", 1)[0] in modes


def stream_response(
    manager: RunManager,
    run: RunRecord,
    *,
    last_event_id: str | None,
    cancel_on_disconnect: bool,
    user_id: str | None,
    headers: dict[str, str],
    modes: set[str] | None = None,
) -> EventSourceResponse:
    """The run's events after `last_event_id` (None: from the start), live, through `end`;
    with `modes`, only the events of those stream modes (and runqueue's own)."""
    finished = asyncio.Event()  # the stream reached its end

    async def frames() -> AsyncIterator[ServerSentEvent]:
        if last_event_id is None:
            # Id 0: a client cut off right after it resumes from the run's first event.
            metadata = {"run_id": run.run_id, "thread_id": run.thread_id}
            yield sse_frame("metadata", metadata, METADATA_ID)
        try:
            async for event in manager.stream(run.run_id, after=last_event_id):
                if event.event == "metadata":
                    continue
                if modes is not None and not _wanted(event, modes):
                    continue
                yield sse_frame(event.event, event.data, event.id)
        except RunQueueError as exc:
            # The stream's store went away (Redis down): close without `end` or `error`, which
            # would tell the client the run ended. The SDK asks the run's status, sees it
            # still running, and reconnects to Location with Last-Event-ID.
            logger.warning(
                "stream of run %s cut: %s",
                run.run_id,
                exc,
                extra={"run_id": run.run_id, "thread_id": run.thread_id, "action": "sse_cut"},
            )
            return
        finished.set()  # not on a disconnect: that cancels this generator before it gets here

    async def on_client_gone(_message: Any) -> None:
        if not cancel_on_disconnect or finished.is_set():
            return
        logger.info(
            "client of run %s went away: cancelling it (on_disconnect=cancel)",
            run.run_id,
            extra={"run_id": run.run_id, "thread_id": run.thread_id, "action": "sse_cancel"},
        )
        try:
            await manager.cancel(run.run_id, action=AbortAction.interrupt, user_id=user_id)
        except RunQueueError as exc:
            logger.warning("could not cancel run %s: %s", run.run_id, exc)

    return EventSourceResponse(
        frames(),
        headers=headers,
        ping=PING_SECONDS,
        client_close_handler_callable=on_client_gone,
    )

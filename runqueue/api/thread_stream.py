"""GET /threads/{thread_id}/stream: the events of every run of the thread as one SSE stream
(thread_follower.py), so that a client that reloads rejoins whatever runs on the thread.

As the reference serves it: no `end` (the stream stays open while the client does, a
`: ping` comment every 15 s), a run's end sent as `metadata {"status": "run_done"}`, and
`stream_modes` (`run_modes`, the default; `lifecycle`; `state_update`), comma-separated.
The SDKs send `stream_mode` too (the JS client's `joinStream(..., {streamMode: ["values"]})`: a
run's modes, none of them a thread stream mode); the reference ignores it, and so does runqueue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from runqueue import validation
from runqueue.api.context import Api
from runqueue.api.runs import HOLDS_A_STREAM, SSE_RESPONSE, TOO_MANY
from runqueue.api.schemas import ERROR_RESPONSES
from runqueue.api.streaming import PING_SECONDS, sse_frame
from runqueue.api.thread_follower import (
    RUN_MODES,
    THREAD_STREAM_MODES,
    ThreadFollower,
    position,
    wanted,
)
from runqueue.api.threads import thread_of_user
from runqueue.api.users import User
from runqueue.errors import InvalidPayloadError, RunQueueError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["threads"], responses=ERROR_RESPONSES)


def thread_stream_modes(given: str | None) -> frozenset[str]:
    """The thread stream modes asked for, comma-separated (none: run_modes);
    InvalidPayloadError (422) naming one that is not a thread stream mode."""
    names = [name.strip() for name in (given or "").split(",") if name.strip()]
    for name in names:
        if name not in THREAD_STREAM_MODES:
            raise InvalidPayloadError(
                f"stream mode {validation.shown(name)} is not a thread stream mode "
                f"(one of: {', '.join(THREAD_STREAM_MODES)})"
            )
    return frozenset(names or [RUN_MODES])


async def _frames(
    follower: ThreadFollower, modes: frozenset[str]
) -> AsyncIterator[ServerSentEvent]:
    try:
        async for event in follower.events():
            if wanted(event, modes):
                yield sse_frame(event.event, event.data, event.id)
    except RunQueueError as exc:
        # The thread was deleted, or a run's stream cannot be read (Redis down): close. The
        # client reconnects with its Last-Event-ID and resumes after it.
        logger.warning(
            "stream of thread %s closed: %s",
            follower.thread_id,
            exc,
            extra={"thread_id": follower.thread_id, "action": "thread_sse_cut"},
        )


@router.get(
    "/threads/{thread_id}/stream",
    responses=SSE_RESPONSE | TOO_MANY,
    dependencies=HOLDS_A_STREAM,
)
async def join_thread_stream(
    *,
    thread_id: str,
    stream_modes: str | None = None,
    last_event_id: str | None = Header(default=None),
    api: Api,
    user: User,
) -> Response:
    """The events of the thread's runs, in the order they run, from Last-Event-ID (none: the
    first event of the oldest run in flight, else the thread's next run), live, until the
    client goes away; each id `<run_id>:<n>` (a run's `run_done`: `<run_id>:done`)."""
    await thread_of_user(api, thread_id, user)
    start = position(last_event_id)
    modes = thread_stream_modes(stream_modes)
    follower = ThreadFollower(api.manager, thread_id, user, start)
    return EventSourceResponse(_frames(follower, modes), ping=PING_SECONDS)

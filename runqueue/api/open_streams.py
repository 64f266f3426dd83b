"""The bound on a user's open streams (RUNQUEUE_API_MAX_STREAMS_PER_USER): a request that
holds a run stream or a wait open (an SSE stream, `join`, `/wait`, `cancel?wait=1`) counts
against its user for as long as its response lasts. One more answers 429 with Retry-After,
before anything is written: a refused `/runs/stream` creates no run.

The count is per API process (`--workers N`: the bound is per process), kept in memory: the
handlers run on the process's one event loop, so no lock is needed. A FastAPI dependency with
`yield` holds the count: FastAPI leaves it after the response is sent, whether the response
ended, failed, or was cancelled because the client went away.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator

from fastapi import Request

from runqueue.api.users import User
from runqueue.errors import TooManyRequestsError

logger = logging.getLogger(__name__)

ANONYMOUS = ""  # with API keys off every caller is this one user, bound like any other
RETRY_AFTER_SECONDS = 5.0  # a refused stream's Retry-After: streams last as long as their runs


class OpenStreams:
    """How many streams and waits each user holds open in this process."""

    def __init__(self, max_per_user: int):
        self.max_per_user = max_per_user
        self._open: Counter[str] = Counter()

    def hold(self, user: str | None) -> None:
        """One more open stream of `user` (None: auth off); TooManyRequestsError (429) if the
        user already holds max_per_user."""
        who = user or ANONYMOUS
        if self._open[who] >= self.max_per_user:
            logger.info(
                "refused a stream of user %s: %d open",
                who or "(anonymous)",
                self._open[who],
                extra={"user_id": who, "action": "stream_refused"},
            )
            raise TooManyRequestsError(
                f"too many open streams: {self._open[who]} of this user are open, the bound "
                f"(RUNQUEUE_API_MAX_STREAMS_PER_USER) is {self.max_per_user}; close one, or try "
                "again later",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._open[who] += 1

    @contextlib.contextmanager
    def holding(self, user: str | None) -> Iterator[None]:
        """hold() for as long as the block runs; released however it ends."""
        self.hold(user)
        try:
            yield
        finally:
            self.release(user)

    def release(self, user: str | None) -> None:
        who = user or ANONYMOUS
        self._open[who] -= 1
        if self._open[who] <= 0:
            del self._open[who]

    def held(self, user: str | None) -> int:
        return self._open[user or ANONYMOUS]


async def hold_stream(request: Request, user: User) -> AsyncIterator[None]:
    """A route dependency: the request counts as one of its user's open streams until its
    response ends."""
    streams: OpenStreams = request.app.state.runqueue.open_streams
    with streams.holding(user):
        yield


async def hold_stream_if_waiting(
    request: Request, user: User, wait: bool = False
) -> AsyncIterator[None]:
    """hold_stream() for a request that waits only when asked to (`cancel?wait=1`)."""
    if not wait:
        yield
        return
    streams: OpenStreams = request.app.state.runqueue.open_streams
    with streams.holding(user):
        yield

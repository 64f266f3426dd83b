"""The HTTP/1.1 protocol `runqueue serve` hands uvicorn: uvicorn's h11 protocol with a bound on
the size of a request's head and on the time it may take to arrive.

Why our own: uvicorn has no option for either. Its default parser (httptools) reads a header
of any size into memory before the application sees the request (a 32 MB `x-api-key` was read
in full before its 401), and no uvicorn timer runs while a request's head is arriving: a
client that sends one byte now and then, or nothing at all, holds its connection for as long
as it likes. uvicorn's `h11_max_incomplete_event_size` bounds the head with h11 alone, and its
keep-alive timeout stops at the first byte of the next request.

- The request line and headers together are at most RUNQUEUE_API_MAX_HEADER_BYTES: beyond,
  431 with a JSON `detail`, and the connection is closed (h11 holds no more than that, plus
  one read of the socket, per connection).
- A request's head must be complete within RUNQUEUE_API_HEADER_TIMEOUT_SECONDS of the
  connection's start or of the end of the previous response, else the connection is closed.
  This closes idle connections too, and a fresh one that never sends a byte.

The timer runs only while no request is being served: a response, however long (a stream,
a wait), is never cut. The body's own bound is RequestBodyLimits' (runqueue.api.limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from runqueue.settings import Settings

PROTOCOL = "runqueue.api.protocol:LimitedH11Protocol"  # what `runqueue serve` names to uvicorn


@functools.cache
def _settings() -> Settings:
    """This process's settings: `runqueue serve` exports them before uvicorn starts, and every
    uvicorn worker process reads them here once, as its application does."""
    return Settings.from_env()


class _Connection(h11.Connection):
    """h11's connection with the head's size bounded: h11 bounds only a head still arriving
    (max_incomplete_event_size), so one that comes whole in a single read is measured here.
    It remembers the status its last protocol error hints at (431 for a head over the
    limit), which uvicorn's handler does not pass on."""

    refusal_status: int | None = None

    def __init__(self, max_head_bytes: int):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal_status = exc.error_status_hint
            raise
        if isinstance(event, h11.Request) and _head_bytes(event) > self.max_head_bytes:
            self.refusal_status = 431
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


def _head_bytes(request: h11.Request) -> int:
    """The request line and headers as sent, give or take their optional whitespace."""
    line = len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


class LimitedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, with the head's size and time bounded (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = _settings()
        self.max_header_bytes = settings.api_max_header_bytes
        self.header_timeout = settings.api_header_timeout_seconds
        self.conn = _Connection(self.max_header_bytes)
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # uvicorn starts a cycle for each request whose head came
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request at once
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._await_head()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed request; 431 with a JSON detail for a head over
        the size limit."""
        if self.conn.refusal_status != 431:
            super().send_400_response(msg)
            return
        detail = f"request line and headers over {self.max_header_bytes} bytes"
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=431, headers=headers, reason=STATUS_PHRASES[431])
        with contextlib.suppress(h11.LocalProtocolError):  # a response already under way
            for event in (response, h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        self.transport.close()

    def _await_head(self) -> None:
        self._head_arrived()
        self.head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        self.logger.debug("closing a connection whose request head did not come in time")
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

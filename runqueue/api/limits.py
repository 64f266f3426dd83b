"""How much of a request body the API reads, and for how long: the whole body is read before
the application sees it, refused with 413 once it is over the size limit, and with 408 when
it has not arrived in full within RUNQUEUE_API_BODY_TIMEOUT_SECONDS of the request's head.

uvicorn has no body timeout: a client sending one byte a second (or one small chunk now and
then) held a request, and its connection, as long as it liked. The head's own bounds are the
protocol's (runqueue.api.protocol). A 408 closes the connection: the rest of the body is never
read. After a 413 the server reads and drops the rest, so that a client that sends its whole
body before it reads (as httpx does) gets the answer; the protocol's header timeout, which
runs from the end of that answer, bounds how long. Once the body is in, nothing here bounds
the response: a stream or a wait goes on as long as the client stays.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestBodyLimits:
    """Read the body in full, within `max_bytes` and `timeout` seconds, then hand it on in one
    message (see the module)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.too_large = f"request body over {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, 413, self.too_large)
            return
        try:
            async with asyncio.timeout(self.timeout):
                whole = await self._read(receive)
        except TimeoutError:
            detail = f"request body not received in full within {self.timeout:g} s"
            await _refuse(send, 408, detail, {"Connection": "close"})
            return
        except _BodyTooLarge:
            await _refuse(send, 413, self.too_large)
            return
        if whole is None:
            return  # the client went away: nobody to answer
        body: Message | None = {"type": "http.request", "body": whole}

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # after the body: the client's disconnect
            message, body = body, None
            return message

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body; None if the client went away first."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _BodyTooLarge(Exception):
    pass


async def _refuse(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """A refusal sent before the application is called."""
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

"""One exception handler for runqueue's error family, and a body-size limit: every refusal
is a 4xx (or a 503 while a service is down) with a JSON `detail`, never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runqueue.errors import RunQueueError, first_line

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5  # a 503's Retry-After: the database or broker is down


async def runqueue_error(_request: Request, exc: Exception) -> JSONResponse:
    """RunQueueError -> its class's http_status; the message is the detail."""
    assert isinstance(exc, RunQueueError)
    status = exc.http_status
    if status >= 500 and status != 503:
        logger.exception("unexpected error", exc_info=exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse({"detail": first_line(exc)}, status_code=status, headers=headers)


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(RunQueueError, runqueue_error)


class BodySizeLimit:
    """Refuse a request body over `max_bytes` with 413, whether it declares its length or
    streams it in chunks, before the application reads it whole."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.max_bytes} bytes"}, status_code=413
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

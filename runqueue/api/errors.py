"""One exception handler for runqueue's error family, and a body-size limit: every refusal
is a 4xx (or a 503 while a service is down) with a JSON `detail`, never a 500."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422, its errors as FastAPI lists them, written as ASCII JSON: the input it
    echoes may hold a lone surrogate, which UTF-8 (and so the default rendering) refuses."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(RunQueueError, runqueue_error)
    api.add_exception_handler(RequestValidationError, invalid_request)


class BodySizeLimit:
    """Refuse a request body over `max_bytes` with 413 before the application reads it: at
    once if it declares a larger Content-Length, else (chunked) once that much has arrived;
    a body within the limit is then handed on as it came."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)  # the server stops at Content-Length
            return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.max_bytes} bytes"}, status_code=413
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

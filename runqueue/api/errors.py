"""One exception handler for runqueue's error family: every refusal is a 4xx (or a 503 while a
service is down) with a JSON `detail`, never a 500. An exception nobody expected answers
500 `{"detail": "internal server error"}` and closes the connection."""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from runqueue.errors import RunQueueError, TooManyRequestsError, first_line

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5  # a 503's Retry-After: the database or broker is down


async def runqueue_error(_request: Request, exc: Exception) -> JSONResponse:
    """RunQueueError -> its class's http_status; the message is the detail."""
    assert isinstance(exc, RunQueueError)
    status = exc.http_status
    if status >= 500 and status != 503:
        logger.exception("unexpected error", exc_info=exc)
    headers = None
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    elif isinstance(exc, TooManyRequestsError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse({"detail": first_line(exc)}, status_code=status, headers=headers)


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422, its errors as FastAPI lists them, written as ASCII JSON: the input it
    echoes may hold a lone surrogate, which UTF-8 (and so the default rendering) refuses."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    """Any other exception: a JSON 500 that says `Connection: close`, since the server closes
    the connection after it. Starlette's ServerErrorMiddleware runs this, then raises the
    exception on to the server, which logs it once with its traceback: not here too, or it
    would be twice. The request itself (body, headers) is in neither."""
    return JSONResponse(
        {"detail": "internal server error"}, status_code=500, headers={"Connection": "close"}
    )


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(RunQueueError, runqueue_error)
    api.add_exception_handler(RequestValidationError, invalid_request)
    api.add_exception_handler(Exception, unexpected_error)

"""What join and wait answer: a run's final values (or its error) once it ends, sent as JSON
after keepalive newlines, so no proxy drops the waiting connection for idle."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from runqueue.api.context import ApiContext
from runqueue.api.schemas import RunCreate
from runqueue.api.threads import state_of
from runqueue.errors import RunNotFoundError, RunQueueError, StreamUnavailableError
from runqueue.records import RunRecord, RunStatus

WAIT_FOREVER = 7 * 24 * 3600.0  # join and wait hold on as long as the client does
KEEPALIVE_SECONDS = 5.0  # a waiting JSON response sends a newline this often (JSON ignores it)
DATABASE_POLL_SECONDS = 1.0  # a wait reads the run's status this often while Redis is down
ERROR_TEXT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$", re.DOTALL)


def error_body(run: RunRecord) -> dict[str, Any]:
    """A failed run as join and wait answer it: {"__error__": {"error", "message"}}."""
    text = run.error or run.status.value
    match = ERROR_TEXT.match(text)
    name, message = match.groups() if match else ("RunError", text)
    if run.status is RunStatus.timeout and not match:
        name = "TimeoutError"
    return {"__error__": {"error": name, "message": message}}


async def result_body(api: ApiContext, run: RunRecord) -> Any:
    """What join and wait answer for a finished run: its final values (a graph's state,
    with `__interrupt__` when it waits for a human), or its error."""
    if run.status in (RunStatus.error, RunStatus.timeout):
        return error_body(run)
    if run.status is RunStatus.success and run.result is not None:
        return run.result
    state = await state_of(api, run.thread_id)  # cancelled: the state it left
    return state.values if state is not None and state.values is not None else {}


def json_when_done(
    result: Awaitable[Any],
    headers: dict[str, str],
    on_client_gone: Callable[[], Awaitable[object]] | None = None,
) -> StreamingResponse:
    """200 at once, a newline every few seconds while the run works (so no proxy takes the
    connection for idle), then the JSON body. If the client goes away first (Starlette
    cancels the body on `http.disconnect`), `on_client_gone` runs: cancel the run for
    on_disconnect=cancel."""

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.ensure_future(result)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_SECONDS)
                if done:
                    try:
                        answer = task.result()
                    except RunQueueError as exc:  # the 200 is sent: the error goes in the body
                        answer = {"__error__": {"error": type(exc).__name__, "message": str(exc)}}
                    yield json.dumps(answer, ensure_ascii=False).encode()
                    return
                yield b"\n"
        finally:
            if not task.done():
                task.cancel()
                if on_client_gone is not None:
                    # Shielded: this generator is being cancelled itself.
                    await asyncio.shield(on_client_gone())

    return StreamingResponse(body(), media_type="application/json", headers=headers)


def canceller(
    api: ApiContext, run: RunRecord, user: str | None, body: RunCreate
) -> Callable[[], Awaitable[bool]] | None:
    """What a waiting client's disconnect does: cancel its run if it asked for that."""
    if body.on_disconnect != "cancel":
        return None

    async def cancel() -> bool:
        return await api.manager.cancel(run.run_id, user_id=user)

    return cancel


async def final_result(api: ApiContext, run: RunRecord) -> Any:
    """The run's result body once it has ended. Woken by the stream's `end`; while the
    stream's store (Redis) is down, the database (the truth of a run's status) is read
    every DATABASE_POLL_SECONDS instead, so a wait outlives the outage."""
    while True:
        try:
            final = await api.manager.join(run.run_id, timeout=WAIT_FOREVER)
            break
        except StreamUnavailableError:
            current = await api.manager.get(run.run_id)
            if current is None:
                raise RunNotFoundError(f"run {run.run_id} was deleted") from None
            if current.is_final:
                final = current
                break
            await asyncio.sleep(DATABASE_POLL_SECONDS)
    return await result_body(api, final)

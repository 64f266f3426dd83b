"""Runs: create (background, streamed, waited for, stateless), read, join, stream, cancel,
delete. Each handler validates, calls the registry, and serializes; the registry enforces the
thread's strategy in the database."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from runqueue import validation
from runqueue.api.context import Api, ApiContext
from runqueue.api.schemas import ERROR_RESPONSES, MAX_PAGE, Run, RunCreate, RunStatusName
from runqueue.api.streaming import stream_response
from runqueue.api.threads import state_of, thread_of_user
from runqueue.api.users import User
from runqueue.errors import (
    ConflictError,
    InvalidPayloadError,
    RunNotFoundError,
    RunQueueError,
    StreamUnavailableError,
)
from runqueue.records import RunRecord, RunStatus
from runqueue.stream.events import cursor
from runqueue.worker.execution import RunTask

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)

WAIT_FOREVER = 7 * 24 * 3600.0  # join and wait hold on as long as the client does
KEEPALIVE_SECONDS = 5.0  # a waiting JSON response sends a newline this often (JSON ignores it)
DATABASE_POLL_SECONDS = 1.0  # a wait reads the run's status this often while Redis is down
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}
}
# The LangGraph stream modes runqueue's graphs stream. `messages-tuple` is LangGraph's own
# `messages` mode ([chunk, metadata] events named `messages`).
GRAPH_MODES = {
    "values": "values",
    "updates": "updates",
    "custom": "custom",
    "messages": "messages",
    "messages-tuple": "messages",
}
JSON_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "the run's final values"}
}
ERROR_TEXT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$", re.DOTALL)


# -- reading -------------------------------------------------------------------------------


async def run_of_user(
    api: ApiContext, thread_id: str | None, run_id: str, user: str | None
) -> RunRecord:
    """The caller's run of that thread; 422 for a malformed id, 404 for an unknown run or
    another user's (indistinguishable)."""
    if thread_id is not None:
        validation.thread_id(thread_id)
    validation.run_id(run_id)
    run = await api.manager.get(run_id, user_id=user)
    if run is None or (thread_id is not None and run.thread_id != thread_id):
        raise RunNotFoundError(f"run {run_id} not found")
    return run


def _locations(run: RunRecord, last: str) -> dict[str, str]:
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return {"Location": f"{base}/{last}", "Content-Location": base}


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


def _json_when_done(
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


def _canceller(api: ApiContext, run: RunRecord, user: str | None, body: RunCreate):  # noqa: ANN202
    """What a waiting client's disconnect does: cancel its run if it asked for that."""
    if body.on_disconnect != "cancel":
        return None

    async def cancel() -> bool:
        return await api.manager.cancel(run.run_id, user_id=user)

    return cancel


async def _finished(api: ApiContext, run: RunRecord) -> Any:
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


# -- creating ------------------------------------------------------------------------------


def run_kwargs(task: RunTask, body: RunCreate) -> dict[str, Any]:
    """The run's kwargs from the request: a graph takes the LangGraph run fields; a Celery
    assistant takes `input` as its keyword arguments."""
    unsupported = body.unsupported()
    if unsupported:
        raise InvalidPayloadError(
            f"{', '.join(unsupported)}: not supported by runqueue (see docs/api.md)"
        )
    modes = body.stream_mode
    names = [modes] if isinstance(modes, str) else list(modes or [])
    refused = [mode for mode in names if mode not in GRAPH_MODES]
    if refused:
        raise InvalidPayloadError(
            f"stream_mode {refused[0]!r} is not supported by runqueue "
            f"(one of: {', '.join(GRAPH_MODES)})"
        )
    if task.takes_run_fields:
        kwargs: dict[str, Any] = {}
        if body.input is not None:
            kwargs["input"] = body.input
        if body.config:
            kwargs["config"] = body.config
        if body.command is not None:
            kwargs["command"] = body.command.model_dump(exclude_none=True)
        if names:
            kwargs["stream_mode"] = list(dict.fromkeys(GRAPH_MODES[m] for m in names))
        return kwargs
    if body.config or body.command is not None:
        raise InvalidPayloadError(
            f"assistant {task.name!r} is a Celery task: it takes `input` (an object of its "
            "keyword arguments), not config or command"
        )
    if body.input is not None and not isinstance(body.input, dict):
        raise InvalidPayloadError(
            f"assistant {task.name!r} takes `input` as an object of keyword arguments"
        )
    return dict(body.input or {})


async def create_run(
    api: ApiContext, thread_id: str, body: RunCreate, user: str | None, *, stateless: bool
) -> RunRecord:
    validation.thread_id(thread_id)
    name = api.manager.assistant_name(body.assistant_id)
    task = api.manager.sync.app.tasks[name]
    return await api.manager.create_or_reject(
        thread_id,
        name,
        kwargs=run_kwargs(task, body),
        metadata=body.metadata,
        multitask_strategy=body.multitask_strategy,
        on_disconnect=body.on_disconnect,
        user_id=user,
        if_not_exists="create" if stateless else body.if_not_exists,
        own_thread=True,
    )


@router.post("/threads/{thread_id}/runs", response_model=Run)
async def create_background_run(
    *,
    thread_id: str,
    body: RunCreate,
    response: Response,
    api: Api,
    user: User,
) -> Run:
    """A run in the background: 409 if the thread is busy and the strategy is `reject`."""
    run = await create_run(api, thread_id, body, user, stateless=False)
    response.headers.update(_locations(run, "stream"))
    del response.headers["Location"]
    return Run.of(run)


@router.post("/threads/{thread_id}/runs/stream", responses=SSE_RESPONSE)
async def create_streamed_run(
    *,
    thread_id: str,
    body: RunCreate,
    api: Api,
    user: User,
) -> Response:
    run = await create_run(api, thread_id, body, user, stateless=False)
    return _stream(api, run, None, body.on_disconnect == "cancel", user)


@router.post(
    "/threads/{thread_id}/runs/wait", responses={200: {"content": {"application/json": {}}}}
)
async def create_waited_run(
    thread_id: str,
    body: RunCreate,
    api: Api,
    user: User,
) -> Response:
    run = await create_run(api, thread_id, body, user, stateless=False)
    gone = _canceller(api, run, user, body)
    return _json_when_done(_finished(api, run), _locations(run, "join"), gone)


@router.post("/runs", response_model=Run)
async def create_stateless_run(
    *,
    body: RunCreate,
    response: Response,
    api: Api,
    user: User,
) -> Run:
    """A run on a new thread (kept afterwards, with its history: docs/api.md)."""
    run = await create_run(api, str(uuid.uuid4()), body, user, stateless=True)
    response.headers.update(_locations(run, "stream"))
    del response.headers["Location"]
    return Run.of(run)


@router.post("/runs/stream", responses=SSE_RESPONSE)
async def create_stateless_streamed_run(*, body: RunCreate, api: Api, user: User) -> Response:
    run = await create_run(api, str(uuid.uuid4()), body, user, stateless=True)
    return _stream(api, run, None, body.on_disconnect == "cancel", user)


@router.post("/runs/wait", responses=JSON_RESPONSE)
async def create_stateless_waited_run(*, body: RunCreate, api: Api, user: User) -> Response:
    run = await create_run(api, str(uuid.uuid4()), body, user, stateless=True)
    gone = _canceller(api, run, user, body)
    return _json_when_done(_finished(api, run), _locations(run, "join"), gone)


# -- a thread's runs -------------------------------------------------------------------------


@router.get("/threads/{thread_id}/runs", response_model=list[Run])
async def list_runs(
    *,
    thread_id: str,
    limit: int = Query(10, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_PAGE),
    status: RunStatusName | None = None,
    api: Api,
    user: User,
) -> list[Run]:
    await thread_of_user(api, thread_id, user)
    runs = await api.manager.list_by_thread(
        thread_id, user_id=user, status=status, limit=limit, offset=offset
    )
    return [Run.of(run) for run in runs]


@router.get("/threads/{thread_id}/runs/{run_id}", response_model=Run)
async def get_run(
    *,
    thread_id: str,
    run_id: str,
    api: Api,
    user: User,
) -> Run:
    return Run.of(await run_of_user(api, thread_id, run_id, user))


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, response_class=Response)
async def delete_run(
    *,
    thread_id: str,
    run_id: str,
    api: Api,
    user: User,
) -> Response:
    """409 while the run is pending or running: cancel it first."""
    run = await run_of_user(api, thread_id, run_id, user)
    if not await api.manager.cleanup(run.run_id):
        raise ConflictError(f"run {run_id} is still in flight: cancel it first, then delete")
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    *,
    thread_id: str,
    run_id: str,
    api: Api,
    user: User,
) -> Response:
    """The run's final values once it ends, or {"__error__": {...}} if it failed."""
    run = await run_of_user(api, thread_id, run_id, user)
    return _json_when_done(_finished(api, run), {})


@router.get("/threads/{thread_id}/runs/{run_id}/stream", responses=SSE_RESPONSE)
async def join_run_stream(
    *,
    thread_id: str,
    run_id: str,
    cancel_on_disconnect: bool = False,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: str | None = Header(default=None),
    api: Api,
    user: User,
) -> Response:
    """The run's events after Last-Event-ID (none: from its first), live, through `end`;
    with stream_mode, a graph run's events of those modes only."""
    run = await run_of_user(api, thread_id, run_id, user)
    if last_event_id:
        cursor(last_event_id)  # 422 for an id no stream gave
    wanted = [mode for mode in stream_mode or [] if mode]  # the SDK sends stream_mode= for None
    unknown = [mode for mode in wanted if mode not in GRAPH_MODES]
    if unknown:
        raise InvalidPayloadError(
            f"stream_mode {unknown[0]!r} is not served (one of: {', '.join(GRAPH_MODES)})"
        )
    modes = None
    task = api.manager.sync.app.tasks.get(run.assistant_id)
    if wanted and getattr(task, "takes_run_fields", False):
        modes = {GRAPH_MODES[mode] for mode in wanted}
    return _stream(api, run, last_event_id or None, cancel_on_disconnect, user, modes)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    *,
    thread_id: str,
    run_id: str,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
    api: Api,
    user: User,
) -> Response:
    """202 once the cancel is recorded (a queued run never starts; a running one is
    terminated). With wait=1: 200 with the run's final values, sent only once its process
    has stopped and its final status is written. 404 if the run had already finished."""
    run = await run_of_user(api, thread_id, run_id, user)
    if not await api.manager.cancel(run.run_id, action=action, user_id=user):
        current = await run_of_user(api, thread_id, run_id, user)
        raise RunNotFoundError(f"run {run_id} is not in flight: it ended {current.status.value}")
    if not wait:
        return Response(status_code=202)
    return _json_when_done(_finished(api, run), _locations(run, "join"))


def _stream(
    api: ApiContext,
    run: RunRecord,
    last_event_id: str | None,
    cancel_on_disconnect: bool,
    user: str | None,
    modes: set[str] | None = None,
) -> Response:
    return stream_response(
        api.manager,
        run,
        last_event_id=last_event_id,
        cancel_on_disconnect=cancel_on_disconnect,
        user_id=user,
        headers=_locations(run, "stream"),
        modes=modes,
    )

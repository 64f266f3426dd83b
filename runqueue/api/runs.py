"""Runs: create (background, streamed, waited for, stateless), read, join, stream, cancel,
delete. Each handler validates, calls the registry, and serializes; the registry enforces the
thread's strategy in the database. A request's body is made into a run in run_creation.py;
what join and wait answer is in run_results.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response

from runqueue import validation
from runqueue.api.context import Api, ApiContext
from runqueue.api.open_streams import hold_stream, hold_stream_if_waiting
from runqueue.api.run_creation import GRAPH_MODES, create_run
from runqueue.api.run_results import canceller, final_result, json_when_done
from runqueue.api.schemas import (
    ERROR_RESPONSES,
    MAX_PAGE,
    ErrorBody,
    Run,
    RunCreate,
    RunStatusName,
)
from runqueue.api.streaming import stream_response
from runqueue.api.threads import thread_of_user
from runqueue.api.users import User
from runqueue.errors import ConflictError, InvalidPayloadError, RunNotFoundError
from runqueue.records import RunRecord
from runqueue.stream.events import cursor

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)

# A request that holds a stream or a wait open counts against its user's bound while its
# response lasts (open_streams.py): 429 past it, before anything is written.
HOLDS_A_STREAM = [Depends(hold_stream)]
TOO_MANY: dict[int | str, dict[str, Any]] = {429: {"model": ErrorBody}}

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}
}
JSON_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "the run's final values"}
}


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


# -- creating ------------------------------------------------------------------------------


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


@router.post(
    "/threads/{thread_id}/runs/stream",
    responses=SSE_RESPONSE | TOO_MANY,
    dependencies=HOLDS_A_STREAM,
)
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
    "/threads/{thread_id}/runs/wait",
    responses={200: {"content": {"application/json": {}}}} | TOO_MANY,
    dependencies=HOLDS_A_STREAM,
)
async def create_waited_run(
    thread_id: str,
    body: RunCreate,
    api: Api,
    user: User,
) -> Response:
    run = await create_run(api, thread_id, body, user, stateless=False)
    gone = canceller(api, run, user, body)
    return json_when_done(final_result(api, run), _locations(run, "join"), gone)


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


@router.post("/runs/stream", responses=SSE_RESPONSE | TOO_MANY, dependencies=HOLDS_A_STREAM)
async def create_stateless_streamed_run(*, body: RunCreate, api: Api, user: User) -> Response:
    run = await create_run(api, str(uuid.uuid4()), body, user, stateless=True)
    return _stream(api, run, None, body.on_disconnect == "cancel", user)


@router.post("/runs/wait", responses=JSON_RESPONSE | TOO_MANY, dependencies=HOLDS_A_STREAM)
async def create_stateless_waited_run(*, body: RunCreate, api: Api, user: User) -> Response:
    run = await create_run(api, str(uuid.uuid4()), body, user, stateless=True)
    gone = canceller(api, run, user, body)
    return json_when_done(final_result(api, run), _locations(run, "join"), gone)


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


@router.get(
    "/threads/{thread_id}/runs/{run_id}/join", responses=TOO_MANY, dependencies=HOLDS_A_STREAM
)
async def join_run(
    *,
    thread_id: str,
    run_id: str,
    api: Api,
    user: User,
) -> Response:
    """The run's final values once it ends, or {"__error__": {...}} if it failed."""
    run = await run_of_user(api, thread_id, run_id, user)
    return json_when_done(final_result(api, run), {})


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    responses=SSE_RESPONSE | TOO_MANY,
    dependencies=HOLDS_A_STREAM,
)
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
    # 422 for an id no stream gave; "-1" (the SDKs' whole replay) is a fresh stream, `metadata`
    # first, as the reference replays it.
    after = last_event_id if last_event_id and cursor(last_event_id) is not None else None
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
    return _stream(api, run, after, cancel_on_disconnect, user, modes)


@router.post(
    "/threads/{thread_id}/runs/{run_id}/cancel",
    status_code=202,
    responses=TOO_MANY,
    dependencies=[Depends(hold_stream_if_waiting)],
)
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
    return json_when_done(final_result(api, run), _locations(run, "join"))


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

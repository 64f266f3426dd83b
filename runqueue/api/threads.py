"""Threads: create, get, search, delete, and their state."""

from __future__ import annotations

from fastapi import APIRouter, Response

from runqueue import validation
from runqueue.api.context import Api, ApiContext
from runqueue.api.schemas import (
    ERROR_RESPONSES,
    Thread,
    ThreadCreate,
    ThreadSearch,
    ThreadStateBody,
)
from runqueue.api.users import User
from runqueue.errors import InvalidRunIdError, ThreadNotFoundError, UnknownAssistantError
from runqueue.records import ThreadState, ThreadView

router = APIRouter(tags=["threads"], responses=ERROR_RESPONSES)


async def thread_of_user(api: ApiContext, thread_id: str, user: str | None) -> ThreadView:
    """The caller's thread; 422 for a malformed id, 404 for an unknown or another user's."""
    validation.thread_id(thread_id)
    view = await api.manager.get_thread(thread_id, user_id=user)
    if view is None:
        raise ThreadNotFoundError(f"thread {thread_id} not found")
    return view


async def state_of(api: ApiContext, thread_id: str) -> ThreadState | None:
    """The thread's state; None if its latest run's assistant is not registered here."""
    try:
        return await api.manager.state(thread_id)
    except UnknownAssistantError:
        return None


def addressable(thread_id: str) -> str:
    """A thread id the API can make: one that fits in a URL path segment (no `/`; threads
    the library made with one are listed, not addressed)."""
    validation.thread_id(thread_id)
    if "/" in thread_id:
        raise InvalidRunIdError(
            f"invalid thread id: {thread_id!r} (over HTTP, a thread id has no '/')"
        )
    return thread_id


@router.post("/threads", response_model=Thread)
async def create_thread(
    *,
    body: ThreadCreate,
    api: Api,
    user: User,
) -> Thread:
    thread_id = addressable(body.thread_id) if body.thread_id is not None else None
    record = await api.manager.create_thread(
        thread_id,
        metadata=body.metadata,
        if_exists=body.if_exists,
        user_id=user,
        ttl=body.ttl.model_dump() if body.ttl is not None else None,
    )
    view = await thread_of_user(api, record.thread_id, user)
    return Thread.of(view, await state_of(api, record.thread_id))


@router.get("/threads/{thread_id}", response_model=Thread)
async def get_thread(*, thread_id: str, api: Api, user: User) -> Thread:
    view = await thread_of_user(api, thread_id, user)
    return Thread.of(view, await state_of(api, thread_id))


@router.delete("/threads/{thread_id}", status_code=204, response_class=Response)
async def delete_thread(*, thread_id: str, api: Api, user: User) -> Response:
    """409 while a run of the thread is pending or running: deleting never stops work, so
    cancel it first (POST .../runs/{run_id}/cancel?wait=1), then delete."""
    validation.thread_id(thread_id)
    await api.manager.delete_thread(thread_id, user_id=user)
    return Response(status_code=204)


@router.post("/threads/search", response_model=list[Thread])
async def search_threads(*, body: ThreadSearch, api: Api, user: User) -> list[Thread]:
    views = await api.manager.search_threads(
        user_id=user,
        metadata=body.metadata,
        ids=body.ids,
        status=body.status,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by or "created_at",
        sort_order=body.sort_order or "desc",
    )
    return [Thread.of(view, await state_of(api, view.thread.thread_id)) for view in views]


@router.get("/threads/{thread_id}/state", response_model=ThreadStateBody)
async def get_thread_state(
    *, thread_id: str, api: Api, user: User, subgraphs: bool = False
) -> ThreadStateBody:
    """The thread's latest state (`subgraphs`: each subgraph's state nested in its task)."""
    await thread_of_user(api, thread_id, user)
    state = await api.manager.state(thread_id, subgraphs=subgraphs)
    return ThreadStateBody.of(state)

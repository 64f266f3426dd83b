"""Threads changed as a whole: PATCH /threads/{id} (metadata merged, ttl set), POST
/threads/count, POST /threads/{id}/copy and POST /threads/prune, as the reference server
serves them (docs/api.md lists where runqueue answers otherwise)."""

from __future__ import annotations

from fastapi import APIRouter

from runqueue import validation
from runqueue.api.context import Api
from runqueue.api.schemas import ERROR_RESPONSES, Thread
from runqueue.api.thread_schemas import (
    ThreadCopy,
    ThreadCount,
    ThreadPatch,
    ThreadPrune,
    ThreadsPruned,
)
from runqueue.api.threads import state_of, thread_of_user
from runqueue.api.users import User

router = APIRouter(tags=["threads"], responses=ERROR_RESPONSES)


@router.post("/threads/count", response_model=int)
async def count_threads(*, body: ThreadCount, api: Api, user: User) -> int:
    """How many of the caller's threads POST /threads/search would find with these filters."""
    return await api.manager.count_threads(user_id=user, metadata=body.metadata, status=body.status)


@router.post("/threads/prune", response_model=ThreadsPruned)
async def prune_threads(*, body: ThreadPrune, api: Api, user: User) -> ThreadsPruned:
    """Delete the threads (`delete`) or keep each with its latest checkpoint only
    (`keep_latest`). A thread with a run in flight is left as it is, as is an unknown id or
    another user's thread: `pruned_count` counts the others."""
    pruned = await api.manager.prune_threads(body.thread_ids, strategy=body.strategy, user_id=user)
    return ThreadsPruned(pruned_count=pruned)


@router.patch("/threads/{thread_id}", response_model=Thread)
async def patch_thread(*, thread_id: str, body: ThreadPatch, api: Api, user: User) -> Thread:
    """Merge `metadata` into the thread's (its top-level keys replace the thread's), and
    set its `ttl` if given."""
    validation.thread_id(thread_id)
    await api.manager.patch_thread(
        thread_id,
        metadata=body.metadata,
        ttl=body.ttl.model_dump() if body.ttl is not None else None,
        user_id=user,
    )
    view = await thread_of_user(api, thread_id, user)
    return Thread.of(view, await state_of(api, thread_id))


@router.post("/threads/{thread_id}/copy", response_model=Thread)
async def copy_thread(
    *, thread_id: str, body: ThreadCopy | None = None, api: Api, user: User
) -> Thread:
    """A new thread with this one's metadata, state and history (no runs). 409 while a run
    of it is in flight: a copy is taken between runs. The body, if any, is empty."""
    validation.thread_id(thread_id)
    copy = await api.manager.copy_thread(thread_id, user_id=user)
    view = await thread_of_user(api, copy.thread_id, user)
    return Thread.of(view, await state_of(api, copy.thread_id))

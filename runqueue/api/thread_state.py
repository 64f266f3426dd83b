"""A thread's history and time travel: its checkpoints newest first, its state at any one of
them, and a state update between runs (409 while a run of the thread is in flight)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from runqueue.api.context import Api
from runqueue.api.schemas import ERROR_RESPONSES, ThreadStateBody
from runqueue.api.state_schemas import (
    DEFAULT_HISTORY,
    HistorySearch,
    StateAtCheckpoint,
    StateUpdate,
    StateUpdated,
)
from runqueue.api.threads import thread_of_user
from runqueue.api.users import User
from runqueue.registry.thread_state import MAX_HISTORY

router = APIRouter(tags=["threads"], responses=ERROR_RESPONSES)


@router.get("/threads/{thread_id}/history", response_model=list[ThreadStateBody])
async def get_history(
    *,
    thread_id: str,
    api: Api,
    user: User,
    limit: int = Query(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY),
    before: str | None = None,
) -> list[ThreadStateBody]:
    """The thread's checkpoints, newest first: at most `limit`, older than `before`."""
    await thread_of_user(api, thread_id, user)
    states = await api.manager.history(thread_id, limit=limit, before=before)
    return [ThreadStateBody.of(state) for state in states]


@router.post("/threads/{thread_id}/history", response_model=list[ThreadStateBody])
async def search_history(
    *, thread_id: str, body: HistorySearch, api: Api, user: User
) -> list[ThreadStateBody]:
    """The thread's checkpoints, newest first, as langgraph-sdk's get_history() asks."""
    await thread_of_user(api, thread_id, user)
    states = await api.manager.history(
        thread_id,
        limit=body.limit,
        before=body.before_given(),
        metadata=body.metadata,
        checkpoint=body.checkpoint.given() if body.checkpoint else None,
    )
    return [ThreadStateBody.of(state) for state in states]


@router.get("/threads/{thread_id}/state/{checkpoint_id}", response_model=ThreadStateBody)
async def get_state_at(
    *, thread_id: str, checkpoint_id: str, api: Api, user: User, subgraphs: bool = False
) -> ThreadStateBody:
    """The thread's state at one checkpoint; 404 if it has none by that id."""
    await thread_of_user(api, thread_id, user)
    state = await api.manager.state_at(thread_id, checkpoint_id, subgraphs=subgraphs)
    return ThreadStateBody.of(state)


@router.post("/threads/{thread_id}/state/checkpoint", response_model=ThreadStateBody)
async def post_state_at(
    *, thread_id: str, body: StateAtCheckpoint, api: Api, user: User
) -> ThreadStateBody:
    """The thread's state at the checkpoint the body names (a subgraph's too)."""
    await thread_of_user(api, thread_id, user)
    state = await api.manager.state_at(thread_id, body.checkpoint.given(), subgraphs=body.subgraphs)
    return ThreadStateBody.of(state)


@router.post("/threads/{thread_id}/state", response_model=StateUpdated)
async def update_state(*, thread_id: str, body: StateUpdate, api: Api, user: User) -> StateUpdated:
    """A new checkpoint of the thread's graph, as LangGraph's update_state() writes it.
    409 while a run of the thread is pending or running; 400 if the thread has no graph."""
    await thread_of_user(api, thread_id, user)
    written = await api.manager.update_state(
        thread_id,
        body.values,
        as_node=body.as_node,
        checkpoint=body.checkpoint.given() if body.checkpoint else None,
        checkpoint_id=body.checkpoint_id,
        user_id=user,
    )
    return StateUpdated.of(written)

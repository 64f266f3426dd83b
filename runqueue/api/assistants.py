"""The assistant routes, as the reference server's: create, get, patch (a new version),
delete, search, count, versions, set the active version (`latest`), and a graph's drawing,
schemas and subgraphs.

Every registered assistant has a read-only default assistant (its id uuid5 of its name, as
the reference's; the name is accepted too); assistants made here are stored with their
versions and belong to the key's user (runqueue/registry/assistants.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Response

from runqueue import validation
from runqueue.api.assistant_schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantPatch,
    AssistantVersion,
    AssistantVersionChange,
    AssistantVersionsSearch,
    assistant_body,
    version_body,
)
from runqueue.api.context import Api, ApiContext
from runqueue.api.schemas import ERROR_RESPONSES, Assistant, AssistantSearch
from runqueue.api.users import User, current_user
from runqueue.errors import InvalidPayloadError
from runqueue.records import AssistantRecord

router = APIRouter(
    tags=["assistants"], dependencies=[Depends(current_user)], responses=ERROR_RESPONSES
)


def _check_nesting(api: ApiContext, **values: Any) -> None:
    for name, value in values.items():
        validation.check_nesting(name, value, api.settings.max_json_depth)


@router.post("/assistants", response_model=Assistant)
async def create_assistant(*, body: AssistantCreate, api: Api, user: User) -> Assistant:
    _check_nesting(api, config=body.config, context=body.context, metadata=body.metadata)
    record = await api.manager.create_assistant(
        body.graph_id,
        assistant_id=body.assistant_id,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        name=body.name,
        description=body.description,
        if_exists=body.if_exists,
        user_id=user,
    )
    return assistant_body(record)


@router.post("/assistants/search", response_model=list[Assistant])
async def search_assistants(
    *, body: AssistantSearch, api: Api, user: User, response: Response
) -> list[Assistant]:
    _check_nesting(api, metadata=body.metadata)
    found = await api.manager.search_assistants(
        graph_id=body.graph_id,
        name=body.name,
        metadata=body.metadata,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        limit=body.limit + 1,  # one more: is there a next page?
        offset=body.offset,
        user_id=user,
    )
    if len(found) > body.limit:
        found = found[: body.limit]
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
        response.headers["X-Pagination-Total"] = str(body.offset + body.limit + 1)
    else:
        response.headers["X-Pagination-Total"] = str(body.offset + len(found))
    return [assistant_body(record) for record in found]


@router.post("/assistants/count", response_model=int)
async def count_assistants(*, body: AssistantCount, api: Api, user: User) -> int:
    _check_nesting(api, metadata=body.metadata)
    return await api.manager.count_assistants(
        graph_id=body.graph_id, name=body.name, metadata=body.metadata, user_id=user
    )


@router.get("/assistants/{assistant_id}", response_model=Assistant)
async def get_assistant(*, assistant_id: str, api: Api, user: User) -> Assistant:
    return assistant_body(await api.manager.get_assistant(assistant_id, user_id=user))


@router.patch("/assistants/{assistant_id}", response_model=Assistant)
async def patch_assistant(
    *, assistant_id: str, body: AssistantPatch, api: Api, user: User
) -> Assistant:
    _check_nesting(api, config=body.config, context=body.context, metadata=body.metadata)
    record = await api.manager.patch_assistant(
        assistant_id,
        graph_id=body.graph_id,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        name=body.name,
        description=body.description,
        user_id=user,
    )
    return assistant_body(record)


@router.delete("/assistants/{assistant_id}", status_code=204)
async def delete_assistant(
    *, assistant_id: str, api: Api, user: User, delete_threads: bool = False
) -> Response:
    if delete_threads:
        raise InvalidPayloadError(
            "delete_threads is not supported by runqueue: delete the threads with "
            "DELETE /threads/{thread_id}"
        )
    await api.manager.delete_assistant(assistant_id, user_id=user)
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions", response_model=list[AssistantVersion])
async def assistant_versions(
    *, assistant_id: str, body: AssistantVersionsSearch, api: Api, user: User
) -> list[AssistantVersion]:
    _check_nesting(api, metadata=body.metadata)
    found = await api.manager.assistant_versions(
        assistant_id, metadata=body.metadata, limit=body.limit, offset=body.offset, user_id=user
    )
    return [version_body(record) for record in found]


@router.post("/assistants/{assistant_id}/latest", response_model=Assistant)
async def set_latest_version(
    *, assistant_id: str, body: AssistantVersionChange, api: Api, user: User
) -> Assistant:
    record = await api.manager.set_assistant_version(assistant_id, body.version, user_id=user)
    return assistant_body(record)


async def _graph_of(api: ApiContext, assistant_id: str, user: str | None) -> Any:
    """The assistant's graph as this process builds it (its record checked first)."""
    record: AssistantRecord = await api.manager.get_assistant(assistant_id, user_id=user)
    task = api.manager.sync.app.tasks[record.graph_id]
    if not task.takes_run_fields:
        raise InvalidPayloadError(f"assistant {record.graph_id!r} is a Celery task, not a graph")
    return record, await asyncio.to_thread(task.graph)


def _xray(value: str | None) -> bool | int:
    """The reference's `xray` query value: true/false, or a positive depth."""
    if value in (None, "", "false", "False"):
        return False
    if value in ("true", "True"):
        return True
    try:
        depth = int(value)
    except ValueError:
        depth = 0
    if depth <= 0:
        raise InvalidPayloadError("Invalid xray value")
    return depth


@router.get("/assistants/{assistant_id}/graph")
async def assistant_graph(
    *, assistant_id: str, api: Api, user: User, xray: str | None = None
) -> dict[str, Any]:
    from runqueue.langgraph.graph_views import graph_json

    depth = _xray(xray)
    _, graph = await _graph_of(api, assistant_id, user)
    return await asyncio.to_thread(graph_json, graph, depth)


@router.get("/assistants/{assistant_id}/schemas")
async def assistant_schemas(*, assistant_id: str, api: Api, user: User) -> dict[str, Any]:
    from runqueue.langgraph.graph_views import graph_schemas

    record, graph = await _graph_of(api, assistant_id, user)
    return {"graph_id": record.graph_id, **await asyncio.to_thread(graph_schemas, graph)}


@router.get("/assistants/{assistant_id}/subgraphs")
@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def assistant_subgraphs(
    *, assistant_id: str, api: Api, user: User, namespace: str | None = None, recurse: bool = False
) -> dict[str, Any]:
    from runqueue.langgraph.graph_views import subgraph_schemas

    _, graph = await _graph_of(api, assistant_id, user)
    return await asyncio.to_thread(subgraph_schemas, graph, namespace, recurse)

"""The Store: PUT/GET/DELETE /store/items, POST /store/items/search, POST /store/namespaces,
as the reference server answers them (docs/api.md, "Store"). Each user sees only their own
items (runqueue.langgraph.owned_store): another user's item is not there (GET answers null,
as for any missing item; search and listings never show it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from runqueue.api.context import ApiContext
from runqueue.api.schemas import ERROR_RESPONSES, ErrorBody, Strict
from runqueue.api.users import User
from runqueue.errors import StoreKeyMissingError
from runqueue.registry.store_items import StoreItems

# 400: an empty namespace on a put, no key on a get, as the reference answers them.
router = APIRouter(tags=["store"], responses={**ERROR_RESPONSES, 400: {"model": ErrorBody}})


def store_items(request: Request) -> StoreItems:
    """The API's StoreItems, made once per app from its registry."""
    found = getattr(request.app.state, "store_items", None)
    if found is None:
        api: ApiContext = request.app.state.runqueue
        found = StoreItems(app=api.manager.sync.app)
        request.app.state.store_items = found
    return found


Items = Annotated[StoreItems, Depends(store_items)]


class StorePut(Strict):
    namespace: list[Any]
    key: Any
    value: Any
    index: Any = None
    ttl: Any = None


class StoreDelete(Strict):
    namespace: list[Any] = Field(default_factory=list)
    key: Any


class StoreSearch(Strict):
    namespace_prefix: list[Any] | None = None
    filter: dict[str, Any] | None = None
    limit: Any = 10
    offset: Any = 0
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreNamespaces(Strict):
    prefix: list[Any] | None = None
    suffix: list[Any] | None = None
    max_depth: Any = None
    limit: Any = 100
    offset: Any = 0


@router.put("/store/items", status_code=204, response_class=Response)
async def put_item(*, body: StorePut, items: Items, user: User) -> Response:
    """Store or replace an item; `ttl` in minutes (refreshed by reads)."""
    await items.aput(
        body.namespace, body.key, body.value, index=body.index, ttl=body.ttl, user_id=user
    )
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(
    *,
    items: Items,
    user: User,
    namespace: str = "",
    key: str | None = None,
    refresh_ttl: bool | None = None,
) -> dict[str, Any] | None:
    """The item at `namespace` (labels joined by '.') and `key`; null if there is none."""
    labels = namespace.split(".")
    if not key:
        raise StoreKeyMissingError()
    item = await items.aget(labels, key, refresh_ttl=refresh_ttl, user_id=user)
    return None if item is None else item.dict()


@router.delete("/store/items", status_code=204, response_class=Response)
async def delete_item(*, body: StoreDelete, items: Items, user: User) -> Response:
    await items.adelete(body.namespace, body.key, user_id=user)
    return Response(status_code=204)


@router.post("/store/items/search")
async def search_items(*, body: StoreSearch, items: Items, user: User) -> dict[str, Any]:
    """Items under a namespace prefix: by `filter`, and with `query` nearest first when an
    embedding function is configured."""
    found = await items.asearch(
        body.namespace_prefix or [],
        query=body.query,
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
        refresh_ttl=body.refresh_ttl,
        user_id=user,
    )
    return {"items": [item.dict() for item in found]}


@router.post("/store/namespaces")
async def list_namespaces(*, body: StoreNamespaces, items: Items, user: User) -> dict[str, Any]:
    found = await items.alist_namespaces(
        prefix=body.prefix,
        suffix=body.suffix,
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
        user_id=user,
    )
    return {"namespaces": [list(namespace) for namespace in found]}

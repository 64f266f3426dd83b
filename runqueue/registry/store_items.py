"""The Store from outside a graph: put, get, delete and search items, list namespaces, as
one user sees them (runqueue.langgraph.owned_store), on LangGraph's official store.

    items = StoreItems(settings=Settings.from_env())
    items.put(("prefs",), "color", {"value": "green"}, user_id="alice")
    items.get(("prefs",), "color", user_id="alice").value  # {"value": "green"}

What the HTTP API's /store routes call (their async twins). Input is checked before the
store is touched (a namespace's labels, the value's size and nesting, limits): a typed
RunQueueError, nothing written.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from celery import Celery

from runqueue import validation
from runqueue.errors import (
    EmptyNamespaceError,
    InvalidNamespaceError,
    InvalidPayloadError,
    StoreKeyMissingError,
    first_line,
)
from runqueue.registry.base import RegistryBase
from runqueue.registry.threads import MAX_PAGE
from runqueue.settings import Settings

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore, Item, SearchItem

Namespace = tuple[str, ...]


def namespace_of(value: Any, *, allow_empty: bool = True) -> Namespace:
    """A namespace as the store takes it: non-empty string labels without periods (a label
    with one could not be told apart from two, as the reference refuses it too)."""
    if not isinstance(value, list | tuple):
        raise InvalidNamespaceError("a store namespace must be a list of labels")
    for label in value:
        if not isinstance(label, str) or not label or "." in label or not _storable(label):
            raise InvalidNamespaceError(
                f"namespace label {validation.shown(label)} must be a non-empty string "
                "without periods (nor NUL characters or lone surrogates)"
            )
    if not value and not allow_empty:
        raise EmptyNamespaceError()
    return tuple(value)


def _page(limit: Any, offset: Any) -> tuple[int, int]:
    for name, number in (("limit", limit), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_PAGE:
            raise InvalidPayloadError(f"{name} must be an integer between 0 and {MAX_PAGE}")
    return limit, offset


class StoreItems(RegistryBase):
    """The Store's items and namespaces, per user (None: the store as it is, every user's
    prefix visible: API keys off, or an operator)."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None):
        super().__init__(app, settings)

    def _store(self, user_id: str | None) -> BaseStore:
        from runqueue.langgraph.item_store import ItemStore
        from runqueue.langgraph.owned_store import OwnedStore

        user = validation.user_id(user_id)
        return OwnedStore(ItemStore.for_settings(self.store, self.settings), lambda: user)

    def put(
        self,
        namespace: Any,
        key: Any,
        value: Any,
        *,
        index: Any = None,
        ttl: float | None = None,
        user_id: str | None = None,
    ) -> None:
        """Store or replace the item; `ttl` in minutes (None: kept until deleted)."""
        checked = namespace_of(namespace, allow_empty=False)
        key = _key(key)
        if not isinstance(value, dict):
            raise InvalidPayloadError("an item's value must be a JSON object")
        value = validation.json_object(
            "value", value, self.settings.max_payload_bytes, self.settings.max_json_depth
        )
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 2**31
        ):
            raise InvalidPayloadError("ttl must be a positive number of minutes, or null")
        if index is not None and index is not False and not _strings(index):
            raise InvalidPayloadError("index must be false, null or a list of field paths")
        self._store(user_id).put(checked, key, value, index=index, ttl=ttl)

    def get(
        self,
        namespace: Any,
        key: Any,
        *,
        refresh_ttl: bool | None = None,
        user_id: str | None = None,
    ) -> Item | None:
        """The item, or None: none there, or only another user's."""
        checked = namespace_of(namespace)
        return self._store(user_id).get(checked, _key(key), refresh_ttl=refresh_ttl)

    def delete(self, namespace: Any, key: Any, *, user_id: str | None = None) -> None:
        """Delete the item if there is one (no error if there is none)."""
        checked = namespace_of(namespace)
        self._store(user_id).delete(checked, _key(key))

    def search(
        self,
        namespace_prefix: Any = (),
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
        user_id: str | None = None,
    ) -> list[SearchItem]:
        """Items under the prefix: with `query`, nearest first when an embedding function is
        configured (Settings.store_embed), else most recently updated first."""
        checked = namespace_of(namespace_prefix)
        limit, offset = _page(limit, offset)
        if filter is not None:
            filter = validation.json_object(
                "filter", filter, self.settings.max_payload_bytes, self.settings.max_json_depth
            )
        if query is not None and (not isinstance(query, str) or not _storable(query)):
            raise InvalidPayloadError("query must be a string (no NUL, no lone surrogate)")
        try:
            return self._store(user_id).search(
                checked,
                query=query,
                filter=filter or None,
                limit=limit,
                offset=offset,
                refresh_ttl=refresh_ttl,
            )
        except ValueError as refused:  # the official store's own check of the filter
            raise InvalidPayloadError(f"filter: {first_line(refused)}") from None

    def list_namespaces(
        self,
        *,
        prefix: Any = None,
        suffix: Any = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
        user_id: str | None = None,
    ) -> list[Namespace]:
        """The namespaces that hold items, matching `prefix` and `suffix` (a label may be
        "*", any label), cut to `max_depth` labels."""
        prefix = namespace_of(prefix) if prefix else None
        suffix = namespace_of(suffix) if suffix else None
        limit, offset = _page(limit, offset)
        if max_depth is not None and (
            isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
        ):
            raise InvalidPayloadError("max_depth must be a positive integer")
        return self._store(user_id).list_namespaces(
            prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
        )

    # -- the async twins (a database round trip off the event loop) ----------------------------

    async def aput(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.put, *args, **kwargs)

    async def aget(self, *args: Any, **kwargs: Any) -> Item | None:
        return await asyncio.to_thread(self.get, *args, **kwargs)

    async def adelete(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, *args, **kwargs)

    async def asearch(self, *args: Any, **kwargs: Any) -> list[SearchItem]:
        return await asyncio.to_thread(self.search, *args, **kwargs)

    async def alist_namespaces(self, **kwargs: Any) -> list[Namespace]:
        return await asyncio.to_thread(self.list_namespaces, **kwargs)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(each, str) for each in value)


def _storable(text: str) -> bool:
    """Text both databases take: no NUL, valid UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise StoreKeyMissingError()
    if not _storable(key):
        raise InvalidPayloadError("an item's key cannot hold a NUL character or a lone surrogate")
    return key

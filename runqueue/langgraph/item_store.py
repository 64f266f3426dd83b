"""LangGraph's official Store on runqueue's database: the long-term memory graphs share
across threads (`runtime.store`, `get_store()`, an injected `store`).

Each batch of operations runs the official store, `PostgresStore` (langgraph-checkpoint-
postgres) or `SqliteStore` (langgraph-checkpoint-sqlite), on a connection runqueue's store
lends for that batch (runqueue.store.items says which). Nothing here writes SQL. Semantic
search is the official stores' own, when Settings.store_embed names an embedding function:
pgvector on PostgreSQL (the `vector` extension must be installable), sqlite-vec on SQLite.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

import sqlite_vec
from langgraph.store.base import BaseStore, Op, Result
from langgraph.store.postgres import PostgresStore
from langgraph.store.sqlite import SqliteStore

from runqueue.errors import RunNotFoundError, SettingsError
from runqueue.runtime import Runtime
from runqueue.settings import Settings
from runqueue.store import LentConnection, RunQueries, RunStore

# (pid, database URL, with vectors) whose store tables this process set up
_done: set[tuple[int, str, bool]] = set()
_done_lock = threading.Lock()
TTL = {"refresh_on_read": True}  # a read (get, search) refreshes an item's ttl, as the reference


class _LentSqliteStore(SqliteStore):
    """SqliteStore on a connection the store lends, inside the store's transaction: it must
    neither begin nor commit, nor run its lazy setup() (setup_item_store did, once)."""

    def __init__(self, conn: Any, **kwargs: Any):
        super().__init__(conn, **kwargs)
        self.is_setup = True
        if self.index_config:  # the vector functions live in the extension, per connection
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)

    @contextmanager
    def _cursor(self, *, transaction: bool = True) -> Iterator[Any]:
        cursor = self.conn.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


def official_store(lent: LentConnection, index: dict[str, Any] | None = None) -> BaseStore:
    """The official store for the lent connection's database, on its driver connection."""
    if lent.dialect == "postgresql":
        return PostgresStore(lent.driver, index=index, ttl=TTL)  # type: ignore[arg-type]
    return _LentSqliteStore(lent.driver, index=index, ttl=TTL)


def embedding_function(name: str) -> Callable[[list[str]], list[list[float]]]:
    """The function `module:function` names (Settings.store_embed); SettingsError if none."""
    module_name, _, attribute = name.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SettingsError(f"store_embed {name!r}: {error}") from None
    if not callable(found):
        raise SettingsError(f"store_embed {name!r} is not a function")
    return found


def index_config(settings: Settings) -> dict[str, Any] | None:
    """The official stores' index config for semantic search, or None (search by filter)."""
    if not settings.store_embed:
        return None
    fields = [f.strip() for f in settings.store_embed_fields.split(",") if f.strip()] or ["$"]
    return {
        "dims": settings.store_embed_dims,
        "embed": embedding_function(settings.store_embed),
        "fields": fields,  # PostgresStore's name for them
        "text_fields": fields,  # SqliteStore's
    }


def setup_item_store(store: RunStore, index: dict[str, Any] | None = None) -> None:
    """Create or upgrade the official store's tables (and its vector tables, with `index`)
    with its own setup(): once per process and database (runqueue migrate runs it too)."""
    key = (os.getpid(), store.database_url, index is not None)
    if key in _done:
        return
    with _done_lock:
        if key in _done:
            return

        def set_up(lent: LentConnection) -> None:
            if lent.dialect == "postgresql":
                PostgresStore(lent.driver, index=index).setup()  # type: ignore[arg-type]
            else:
                SqliteStore(lent.driver, index=index).setup()  # type: ignore[arg-type]

        store.set_up_graph_tables(set_up)
        _done.add(key)


class ItemStore(BaseStore):
    """LangGraph's BaseStore on runqueue's database: every batch one lent connection (and,
    on SQLite, one transaction), the official store's statements on it."""

    supports_ttl = True

    def __init__(
        self,
        store: RunStore,
        index: dict[str, Any] | None = None,
        executor: Executor | None = None,
    ):
        self.store = store
        self.index = index
        self.executor = executor  # where abatch runs batch (None: the loop's default)
        self.ttl_config = TTL  # type: ignore[assignment]

    @classmethod
    def for_settings(cls, store: RunStore, settings: Settings, **kwargs: Any) -> ItemStore:
        return cls(store, index_config(settings), **kwargs)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        setup_item_store(self.store, self.index)  # at the first use in this process: a graph
        with self.store.item_connection() as lent:  # that never uses the store costs nothing
            return official_store(lent, self.index).batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        # The official SqliteStore has no async API, and PostgresStore's runs batch() in an
        # executor too: off the graph's event loop, one batch per call.
        listed = list(ops)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.batch, listed)

    def sweep_ttl(self) -> int:
        """Delete the items whose ttl ran out (the maintenance pass does this by itself)."""
        return self.store.sweep_expired_items()


def store_for_run(runtime: Runtime, run_id: str) -> BaseStore:
    """The store a graph run gets: the run's user's view (runqueue.langgraph.owned_store),
    the user read from the run at the graph's first store operation."""
    from runqueue.langgraph.owned_store import OwnedStore

    def owner() -> str | None:
        run = RunQueries(runtime.store).get(run_id)
        if run is None:  # never the whole store for want of an owner: fail closed
            raise RunNotFoundError(f"run {run_id} not found: its store has no owner")
        return run.user_id

    return OwnedStore(ItemStore.for_settings(runtime.store, runtime.settings), owner)

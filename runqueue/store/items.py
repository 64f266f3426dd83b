"""The connections LangGraph's official Store writes through, and its TTL sweep.

The long-term memory of graphs (LangGraph's BaseStore: items in namespaces, across threads)
is kept by the official implementations, `PostgresStore` (langgraph-checkpoint-postgres) and
`SqliteStore` (langgraph-checkpoint-sqlite), in their own tables (`store`, `store_vectors`,
`store_migrations`, `vector_migrations`) beside runqueue's, made by their own setup()
(GraphWriteStatements.set_up_graph_tables runs it, as for the checkpointer's). runqueue
lends them connections from its own pool (runqueue.langgraph.item_store builds the store on
each): on PostgreSQL an autocommit connection, as the official store's own (each statement
its own transaction); on SQLite one BEGIN IMMEDIATE transaction per batch, the same write
lock every other writer of the database takes, so a batch never deadlocks upgrading a read.
The store needs no fencing: an item is not a run's thread state, and a run that lost its
lease may still have remembered something true.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import inspect

from runqueue.store import fork_guard  # noqa: E402
from runqueue.store.database import unreachable_as_error
from runqueue.store.graph_writes import LentConnection, _driver_errors_mapped, _lent
from runqueue.store.transactions import StoreBase

logger = logging.getLogger(__name__)

ITEMS_TABLE = "store"  # the official store's table of items (its setup() makes it)


class ItemStatements(StoreBase):
    """Connections lent to LangGraph's official store, and the maintenance pass's sweep."""

    @contextmanager
    def item_connection(self) -> Iterator[LentConnection]:
        """A connection for one batch of the official store's operations: autocommit on
        PostgreSQL, a write transaction (BEGIN IMMEDIATE) on SQLite."""
        if self.engine.dialect.name != "postgresql":
            with self.transaction() as conn:
                yield _lent(conn)
            return
        with (
            unreachable_as_error(self.database_url),
            _driver_errors_mapped(),
            self.engine.connect() as conn,
        ):
            yield _lent(conn.execution_options(isolation_level="AUTOCOMMIT"))

    def has_item_tables(self) -> bool:
        """True once the official store's setup() made its tables (remembered once true)."""
        if self.__dict__.get("_item_tables"):
            return True
        with unreachable_as_error(self.database_url), self.engine.connect() as conn:
            found = inspect(conn).has_table(ITEMS_TABLE)
        if found:
            self.__dict__["_item_tables"] = True
        return found

    @staticmethod
    def load_item_store_modules() -> None:
        """Import the official stores now. The worker's main process calls this before its
        pool forks: a child forked while another thread of its parent is importing a module
        inherits that module's import lock, held for ever, and hangs when it imports the
        module itself (the maintenance pass's first sweep imported LangGraph's store, and
        langchain_core with it, while a graph run's child was being forked)."""
        try:
            import langgraph.store.postgres  # noqa: F401
            import langgraph.store.sqlite  # noqa: F401
        except ImportError:  # the langgraph extra is not installed: nothing to sweep
            pass

    def sweep_expired_items(self) -> int:
        """Delete the store's items whose ttl ran out, with the official store's own
        sweep_ttl() (the maintenance pass calls this); 0 where LangGraph is not installed or
        its store was never set up. Items read meanwhile had their ttl refreshed by the
        read (refresh_on_read), and the sweep compares by the database's clock."""
        try:
            from langgraph.store.postgres import PostgresStore
            from langgraph.store.sqlite import SqliteStore
        except ImportError:  # the langgraph extra is not installed: no store tables either
            return 0
        if not self.has_item_tables():
            return 0
        with (
            unreachable_as_error(self.database_url),
            _driver_errors_mapped(),
            self.engine.connect() as conn,
        ):
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return PostgresStore(conn.connection.driver_connection).sweep_ttl()
            # The SQLite driver connection is in autocommit mode outside runqueue's
            # transactions: the official sweep opens and commits its own.
            store = SqliteStore(conn.connection.driver_connection)
            store.is_setup = True
            with fork_guard.no_fork():  # its own transaction: a child forked inside is stuck
                return store.sweep_ttl()

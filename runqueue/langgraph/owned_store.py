"""One user's view of the Store: every namespace lives under the user's own prefix.

With API keys on, the namespace ("prefs",) of user alice is kept as ("users", "alice",
"prefs"): the prefix is added to every operation on the way in and stripped from every item
and namespace on the way out, so one user never reads, searches or lists another's items,
and a graph run by alice sees alice's namespaces the same way (her run's store is her view).
A user without an id (API keys off: the one anonymous caller, who also sees every thread;
a run created through the Python API without a user) works on the store's namespaces as
they are, the other users' prefixes included. A '.' or '%' in a user id is escaped in the
label (a namespace label cannot hold a '.').
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

USERS_LABEL = "users"


def owner_prefix(user_id: str | None) -> tuple[str, ...]:
    """The namespace prefix the user's items are kept under (none for no user)."""
    if user_id is None:
        return ()
    return (USERS_LABEL, user_id.replace("%", "%25").replace(".", "%2E"))


class OwnedStore(BaseStore):
    """A store as one user sees it. `owner` gives the user id (None: the store as it is);
    it is asked at the first operation, so a graph that never uses the store costs nothing."""

    supports_ttl = True

    def __init__(self, inner: BaseStore, owner: Callable[[], str | None]):
        self.inner = inner
        self.ttl_config = getattr(inner, "ttl_config", None)
        self._owner = owner
        self._prefix: tuple[str, ...] | None = None

    @property
    def prefix(self) -> tuple[str, ...]:
        if self._prefix is None:
            self._prefix = owner_prefix(self._owner())
        return self._prefix

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        prefix = self.prefix
        if not prefix:
            return self.inner.batch(ops)
        return [self._out(r, prefix) for r in self.inner.batch([self._in(o, prefix) for o in ops])]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        prefix = self.prefix
        if not prefix:
            return await self.inner.abatch(ops)
        inner = [self._in(o, prefix) for o in ops]
        return [self._out(r, prefix) for r in await self.inner.abatch(inner)]

    @staticmethod
    def _in(op: Op, prefix: tuple[str, ...]) -> Op:
        if isinstance(op, GetOp | PutOp):
            return op._replace(namespace=prefix + tuple(op.namespace))
        if isinstance(op, SearchOp):
            return op._replace(namespace_prefix=prefix + tuple(op.namespace_prefix))
        if isinstance(op, ListNamespacesOp):
            conditions = list(op.match_conditions or ())
            given = [c for c in conditions if c.match_type == "prefix"]
            others = [c for c in conditions if c.match_type != "prefix"]
            if given:
                scoped = [MatchCondition("prefix", prefix + tuple(c.path)) for c in given]
            else:
                scoped = [MatchCondition("prefix", prefix)]
            depth = None if op.max_depth is None else op.max_depth + len(prefix)
            return op._replace(match_conditions=tuple(scoped + others), max_depth=depth)
        raise TypeError(f"unknown store operation: {op!r}")

    @staticmethod
    def _out(result: Any, prefix: tuple[str, ...]) -> Any:
        if isinstance(result, Item):  # a copy: a store may hand out the item it keeps
            namespace = tuple(result.namespace[len(prefix) :])
            if isinstance(result, SearchItem):
                return SearchItem(
                    namespace,
                    result.key,
                    result.value,
                    result.created_at,
                    result.updated_at,
                    result.score,
                )
            return Item(
                value=result.value,
                key=result.key,
                namespace=namespace,
                created_at=result.created_at,
                updated_at=result.updated_at,
            )
        if isinstance(result, list):
            return [OwnedStore._out(each, prefix) for each in result]
        if isinstance(result, tuple):  # a namespace
            return result[len(prefix) :]
        return result

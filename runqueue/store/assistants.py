"""Assistants made with POST /assistants, and their versions: created, read, searched,
counted, patched (each patch a new version), set back to an earlier version, deleted.

A user reads and changes only the assistants it owns (`user_id`); None (auth off, or a
library caller) sees every one. Registered graphs' default assistants are not stored here
(runqueue/registry/assistants.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runqueue.errors import AssistantExistsError, AssistantNotFoundError
from runqueue.records import AssistantRecord
from runqueue.store.models import AssistantRow, AssistantVersionRow
from runqueue.store.rows import aware
from runqueue.store.threads import metadata_contains
from runqueue.store.transactions import StoreBase, db_now

FIELDS = ("graph_id", "name", "description", "config", "context", "metadata")
SORTABLE = {
    "assistant_id": AssistantRow.assistant_id,
    "graph_id": AssistantRow.graph_id,
    "name": AssistantRow.name,
    "created_at": AssistantRow.created_at,
    "updated_at": AssistantRow.updated_at,
}
COLUMNS = (
    AssistantRow.assistant_id,
    AssistantRow.graph_id,
    AssistantRow.name,
    AssistantRow.description,
    AssistantRow.config,
    AssistantRow.context,
    AssistantRow.metadata_.label("metadata_"),
    AssistantRow.version,
    AssistantRow.created_at,
    AssistantRow.updated_at,
    AssistantRow.user_id,
)
VERSION_COLUMNS = (
    AssistantVersionRow.assistant_id,
    AssistantVersionRow.version,
    AssistantVersionRow.graph_id,
    AssistantVersionRow.name,
    AssistantVersionRow.description,
    AssistantVersionRow.config,
    AssistantVersionRow.context,
    AssistantVersionRow.metadata_.label("metadata_"),
    AssistantVersionRow.created_at,
)
INSERT_ASSISTANT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def assistant_record(row: Any) -> AssistantRecord:
    return _record(row, row.updated_at, row.user_id)


def _record(row: Any, updated_at: Any, user_id: str | None) -> AssistantRecord:
    """An assistant's or a version's row as a record (a version row has no updated_at or
    owner of its own: the caller says them)."""
    return AssistantRecord(
        assistant_id=row.assistant_id,
        graph_id=row.graph_id,
        name=row.name,
        description=row.description,
        config=row.config or {},
        context=row.context or {},
        metadata=row.metadata_ or {},
        version=row.version,
        created_at=aware(row.created_at),
        updated_at=aware(updated_at),
        user_id=user_id,
    )


def _visible(user_id: str | None) -> list[ColumnElement[bool]]:
    return [] if user_id is None else [AssistantRow.user_id == user_id]


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    """An assistant's fields as column values (`metadata` is the column's name)."""
    values = {name: fields[name] for name in FIELDS if name != "metadata"}
    return values | {"metadata_": fields["metadata"]}


class AssistantStatements(StoreBase):
    """The assistants table and its versions."""

    def put_assistant(
        self, assistant_id: str, user_id: str | None, fields: dict[str, Any], *, if_exists: str
    ) -> AssistantRecord:
        """A new assistant at version 1; an existing id is AssistantExistsError (`raise`, or
        another user's), or that assistant as it is (`do_nothing`)."""
        with self.transaction() as conn:
            statement = (
                INSERT_ASSISTANT[conn.dialect.name](AssistantRow)
                .values(
                    assistant_id=assistant_id,
                    user_id=user_id,
                    version=1,
                    created_at=db_now(),
                    updated_at=db_now(),
                    **_values(fields),
                )
                .on_conflict_do_nothing()
                .returning(*COLUMNS)
            )
            row = conn.execute(statement).one_or_none()
            if row is not None:
                conn.execute(
                    insert(AssistantVersionRow).values(
                        assistant_id=assistant_id,
                        version=1,
                        created_at=row.created_at,
                        **_values(fields),
                    )
                )
                return assistant_record(row)
            existing = self._assistant(conn, assistant_id, user_id)
        if existing is None or if_exists != "do_nothing":
            raise AssistantExistsError(f"assistant {assistant_id} already exists")
        return existing

    def get_assistant(self, assistant_id: str, user_id: str | None) -> AssistantRecord | None:
        with self.reading() as conn:
            return self._assistant(conn, assistant_id, user_id)

    def _assistant(
        self, conn: Connection, assistant_id: str, user_id: str | None, *, lock: bool = False
    ) -> AssistantRecord | None:
        query = select(*COLUMNS).where(
            AssistantRow.assistant_id == assistant_id, *_visible(user_id)
        )
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()  # SQLite: BEGIN IMMEDIATE holds the write lock
        row = conn.execute(query).one_or_none()
        return assistant_record(row) if row is not None else None

    def patch_assistant(
        self, assistant_id: str, user_id: str | None, changes: dict[str, Any]
    ) -> AssistantRecord:
        """A new version made of the active one and `changes` (given fields replace; metadata
        is merged at the top level; a config replaces only when not empty), made active.
        AssistantNotFoundError for an unknown or another user's assistant."""
        with self.transaction() as conn:
            current = self._assistant(conn, assistant_id, user_id, lock=True)
            if current is None:
                raise AssistantNotFoundError(f"assistant {assistant_id} not found")
            fields = {
                "graph_id": changes.get("graph_id") or current.graph_id,
                "name": _given(changes, "name", current.name),
                "description": _given(changes, "description", current.description),
                "config": changes.get("config") or current.config,
                "context": _given(changes, "context", current.context),
                "metadata": current.metadata | (changes.get("metadata") or {}),
            }
            newest = conn.execute(
                select(func.max(AssistantVersionRow.version)).where(
                    AssistantVersionRow.assistant_id == assistant_id
                )
            ).scalar_one()
            version = (newest or 0) + 1
            conn.execute(
                insert(AssistantVersionRow).values(
                    assistant_id=assistant_id,
                    version=version,
                    created_at=db_now(),
                    **_values(fields),
                )
            )
            return self._activate(conn, assistant_id, version, fields)

    def set_assistant_version(
        self, assistant_id: str, user_id: str | None, version: int
    ) -> AssistantRecord:
        """Make an earlier (or later) version the active one: every field as that version
        has it. AssistantNotFoundError for an unknown assistant or version."""
        with self.transaction() as conn:
            if self._assistant(conn, assistant_id, user_id, lock=True) is None:
                raise AssistantNotFoundError(f"assistant {assistant_id} not found")
            row = conn.execute(
                select(*VERSION_COLUMNS).where(
                    AssistantVersionRow.assistant_id == assistant_id,
                    AssistantVersionRow.version == version,
                )
            ).one_or_none()
            if row is None:
                raise AssistantNotFoundError(
                    f"version {version} not found for assistant {assistant_id}"
                )
            fields = {name: getattr(row, name) for name in FIELDS if name != "metadata"}
            return self._activate(conn, assistant_id, version, fields | {"metadata": row.metadata_})

    def _activate(
        self, conn: Connection, assistant_id: str, version: int, fields: dict[str, Any]
    ) -> AssistantRecord:
        row = conn.execute(
            update(AssistantRow)
            .where(AssistantRow.assistant_id == assistant_id)
            .values(version=version, updated_at=db_now(), **_values(fields))
            .returning(*COLUMNS)
        ).one()
        return assistant_record(row)

    def delete_assistant(self, assistant_id: str, user_id: str | None) -> bool:
        """False if there is no such assistant of this user's. Its versions go with it; its
        runs keep the config they were created with (their kwargs)."""
        with self.transaction() as conn:
            deleted = conn.execute(
                delete(AssistantRow).where(
                    AssistantRow.assistant_id == assistant_id, *_visible(user_id)
                )
            ).rowcount
        return deleted > 0

    def assistant_versions(
        self,
        assistant_id: str,
        user_id: str | None,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[AssistantRecord] | None:
        """The assistant's versions, newest first (None: no such assistant of this user's)."""
        with self.reading() as conn:
            current = self._assistant(conn, assistant_id, user_id)
            if current is None:
                return None
            version = AssistantVersionRow
            rows = conn.execute(
                select(*VERSION_COLUMNS)
                .where(
                    version.assistant_id == assistant_id,
                    *metadata_contains(conn.dialect.name, metadata or {}, version.metadata_),
                )
                .order_by(version.version.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [_version_record(current, row) for row in rows]

    def _filters(
        self,
        dialect: str,
        user_id: str | None,
        graph_ids: Sequence[str],
        name: str | None,
        metadata: dict[str, Any] | None,
    ) -> list[ColumnElement[bool]]:
        conditions = [AssistantRow.graph_id.in_(list(graph_ids)), *_visible(user_id)]
        if name:
            conditions.append(func.lower(AssistantRow.name).contains(name.lower(), autoescape=True))
        return conditions + metadata_contains(dialect, metadata or {}, AssistantRow.metadata_)

    def search_assistants(
        self,
        user_id: str | None,
        graph_ids: Sequence[str],
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        sort_by: str = "created_at",
        descending: bool = True,
        limit: int = 10,
    ) -> list[AssistantRecord]:
        """The first `limit` assistants of these graphs that match, in this order."""
        column = SORTABLE[sort_by]
        key = func.lower(column) if sort_by in ("name", "graph_id") else column
        order = key.desc() if descending else key.asc()
        tie = AssistantRow.assistant_id  # as the registry's merge with the defaults orders
        with self.reading() as conn:
            conditions = self._filters(conn.dialect.name, user_id, graph_ids, name, metadata)
            rows = conn.execute(
                select(*COLUMNS)
                .where(*conditions)
                .order_by(order, tie.desc() if descending else tie.asc())
                .limit(limit)
            ).all()
        return [assistant_record(row) for row in rows]

    def count_assistants(
        self,
        user_id: str | None,
        graph_ids: Sequence[str],
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        with self.reading() as conn:
            conditions = self._filters(conn.dialect.name, user_id, graph_ids, name, metadata)
            return conn.execute(
                select(func.count()).select_from(AssistantRow).where(*conditions)
            ).scalar_one()


def _given(changes: dict[str, Any], name: str, current: Any) -> Any:
    value = changes.get(name)
    return current if value is None else value


def _version_record(current: AssistantRecord, row: Any) -> AssistantRecord:
    """A version as the reference lists it: its own fields and its creation time."""
    return _record(row, row.created_at, current.user_id)

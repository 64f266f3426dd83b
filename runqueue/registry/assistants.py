"""Assistants: a registered graph with its own config, context and metadata, each change a
new version (POST/PATCH /assistants, runqueue's Python API alike).

Every registered assistant (a graph, or a Celery task) has a default assistant, not stored:
its id is uuid5 of its name in the namespace the LangGraph Agent Server uses, so a client
that asks for the reference's id gets the same assistant; the name itself is still accepted
everywhere. A default is read-only and every user's. An assistant made with POST /assistants
is stored (runqueue/store/assistants.py), belongs to the user who made it, and is of a graph.

A run on a stored assistant gets that version's config and context under its own, merged as
the reference merges them (with_assistant), and records the assistant and version it used in
its kwargs' config metadata (`assistant_id`, `assistant_version`), which the run row already
stores: nothing more is written when the run is created.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from runqueue import validation
from runqueue.errors import (
    AssistantNotFoundError,
    DefaultAssistantError,
    InvalidAssistantConfigError,
    InvalidPayloadError,
    UnknownAssistantError,
)
from runqueue.records import AssistantRecord
from runqueue.registry.base import RegistryBase
from runqueue.worker.task import RunTask, description_of

# langgraph_api.graph.NAMESPACE_GRAPH: the reference's default assistant of graph G has the
# id uuid5(NAMESPACE_GRAPH, G).
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
SYSTEM_METADATA = {"created_by": "system"}  # a default's metadata, as the reference's
IF_EXISTS = ("raise", "do_nothing")
SORT_BY = ("assistant_id", "graph_id", "name", "created_at", "updated_at")


def default_assistant_id(name: str) -> str:
    """The id of a registered graph's default assistant, as the reference derives it."""
    return str(uuid.uuid5(NAMESPACE_GRAPH, name))


def as_uuid(assistant_id: str) -> str | None:
    """The id in its canonical form, or None if it is not a UUID."""
    try:
        return str(uuid.UUID(assistant_id))
    except (ValueError, AttributeError, TypeError):
        return None


def with_assistant(assistant: AssistantRecord, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A graph run's kwargs on this assistant, as the reference merges them: its config under
    the run's (configurable merged key by key, the run's winning), its context under the
    run's, and the assistant and version in config.metadata."""
    kwargs = dict(kwargs)
    config = dict(kwargs.get("config") or {})
    configurable = {
        **(assistant.config.get("configurable") or {}),
        **(config.get("configurable") or {}),
    }
    context = {**assistant.context, **(kwargs.get("context") or {})}
    merged = {**{k: v for k, v in assistant.config.items() if k != "metadata"}, **config}
    merged["metadata"] = {
        **(assistant.config.get("metadata") or {}),
        **(config.get("metadata") or {}),
        "assistant_id": assistant.assistant_id,
        "assistant_version": assistant.version,
    }
    if configurable:
        merged["configurable"] = configurable
    kwargs["config"] = merged
    if context:
        kwargs["context"] = context
    return kwargs


def _text(name: str, value: str | None) -> str | None:
    """A name, description or name filter a database can store: no NUL character."""
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise InvalidPayloadError(f"{name} must be text without a NUL character")
    return value


class AssistantRegistry(RegistryBase):
    """Assistants: the registered ones' defaults, and the stored ones with their versions."""

    _defaults_at = datetime(2020, 1, 1, tzinfo=UTC)  # a default's created_at: it always was

    def _default(self, name: str) -> AssistantRecord:
        task = self.app.tasks[name]
        return AssistantRecord(
            assistant_id=default_assistant_id(name),
            graph_id=name,
            name=name,
            description=description_of(task) or None,
            config={},
            context={},
            metadata=dict(SYSTEM_METADATA),
            version=1,
            created_at=self._defaults_at,
            updated_at=self._defaults_at,
            default=True,
        )

    def _defaults(self) -> dict[str, str]:
        """Default assistant id -> the registered name it stands for."""
        return {default_assistant_id(name): name for name in self.assistants()}

    def _default_named(self, assistant_id: str) -> str | None:
        """The registered name a default's id (or the name itself) stands for."""
        if assistant_id in self.assistants():
            return assistant_id
        canonical = as_uuid(assistant_id)
        return self._defaults().get(canonical) if canonical else None

    def _graph(self, graph_id: Any) -> str:
        """A registered graph's name: UnknownAssistantError (404) for none, InvalidPayloadError
        for a Celery task (it takes no config)."""
        task = self.app.tasks.get(graph_id) if isinstance(graph_id, str) else None
        if not isinstance(task, RunTask):
            known = ", ".join(self.assistants()) or "none"
            raise UnknownAssistantError(
                f"graph {validation.shown(graph_id)} not found (registered: {known})"
            )
        if not task.takes_run_fields:
            raise InvalidPayloadError(
                f"{graph_id!r} is a Celery task, not a graph: an assistant of it would have no "
                "config or context to give its runs"
            )
        return graph_id

    def get_assistant(self, assistant_id: str, *, user_id: str | None = None) -> AssistantRecord:
        """An assistant by id (a default's also by its graph's name); AssistantNotFoundError
        for none, or another user's."""
        name = self._default_named(assistant_id)
        if name is not None:
            return self._default(name)
        canonical = as_uuid(assistant_id)
        found = self.store.get_assistant(canonical, user_id) if canonical else None
        if found is None or found.graph_id not in self.assistants():
            raise AssistantNotFoundError(f"assistant {validation.shown(assistant_id)} not found")
        return found

    def assistant_for_run(
        self, assistant_id: str | None, *, user_id: str | None = None
    ) -> tuple[str, AssistantRecord | None]:
        """What a run on `assistant_id` runs: the registered name, and the stored assistant
        whose config it gets (None: a default, or a name). One read, for a stored one only."""
        if assistant_id is None or self._default_named(assistant_id) is not None:
            return self.assistant_name(assistant_id and self._default_named(assistant_id)), None
        if as_uuid(assistant_id) is None:
            return self.assistant_name(assistant_id), None  # UnknownAssistantError, by name
        found = self.get_assistant(assistant_id, user_id=user_id)
        return found.graph_id, found

    def _names_stored(self, assistant_id: str | None) -> bool:
        """The id may be a stored assistant's (a UUID, not a default's): a read tells. No I/O."""
        target = _run_target(self, assistant_id)
        return (
            target == assistant_id
            and target is not None
            and as_uuid(target) is not None
            and (target not in self.assistants())
        )

    def _on_assistant(
        self, assistant_id: str | None, options: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """A library caller's run named by an assistant's id: the registered name it runs,
        and for a stored assistant the options with its kwargs merged (with_assistant)."""
        if not self._names_stored(assistant_id):
            return _run_target(self, assistant_id), options
        name, found = self.assistant_for_run(assistant_id, user_id=options.get("user_id"))
        if found is None:
            return name, options
        return name, {**options, "kwargs": with_assistant(found, options.get("kwargs") or {})}

    def _fields(
        self, config: Any, context: Any, metadata: Any, *, graph_id: str | None
    ) -> dict[str, Any]:
        """An assistant's config, context and metadata checked (size, nesting, shape), with
        config.configurable and context mirrored into each other, as the reference keeps
        them."""
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        config = dict(validation.json_object("config", config, limit, depth) or {})
        if context is not None:  # None: a patch keeps the active version's
            context = validation.json_object("context", context, limit, depth)
        metadata = validation.json_object("metadata", metadata, limit, depth)
        configurable = config.get("configurable")
        if configurable is not None and not isinstance(configurable, dict):
            raise InvalidPayloadError("config.configurable must be a JSON object")
        if configurable and context:
            raise InvalidAssistantConfigError(
                "config.configurable, context: give one, not both (context is LangGraph's "
                "replacement for configurable; a run gets it as both)"
            )
        reserved = validation.run_set_keys(configurable or context or {})
        if reserved:
            raise InvalidPayloadError(
                f"{reserved[0]!r} is set by a graph run itself, not by its assistant"
            )
        if configurable:
            context = dict(configurable)
        elif context:
            config["configurable"] = dict(context)
        return {"graph_id": graph_id, "config": config, "context": context, "metadata": metadata}

    def create_assistant(
        self,
        graph_id: str,
        *,
        assistant_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        if_exists: str = "raise",
        user_id: str | None = None,
    ) -> AssistantRecord:
        """A new assistant of a registered graph at version 1, owned by `user_id`.
        AssistantExistsError (409) for an id taken (unless if_exists="do_nothing": that one)."""
        if if_exists not in IF_EXISTS:
            raise InvalidPayloadError(f"if_exists must be one of {', '.join(IF_EXISTS)}")
        given = assistant_id
        assistant_id = as_uuid(given) if given is not None else str(uuid.uuid4())
        if assistant_id is None:
            raise InvalidPayloadError(f"invalid assistant id {validation.shown(given)}: a UUID")
        fields = self._fields(config, context, metadata, graph_id=self._graph(graph_id))
        if assistant_id in self._defaults():
            if if_exists == "do_nothing":
                return self._default(self._defaults()[assistant_id])
            raise DefaultAssistantError(f"assistant {assistant_id} already exists (a default)")
        fields |= {"name": _text("name", name) or "Untitled"}
        fields["description"] = _text("description", description)
        fields["context"] = fields["context"] or {}
        fields["metadata"] = fields["metadata"] or {}
        return self.store.put_assistant(assistant_id, user_id, fields, if_exists=if_exists)

    def _stored_id(self, assistant_id: str) -> str:
        """A stored assistant's id: DefaultAssistantError for a default (read-only),
        AssistantNotFoundError for what is not a UUID."""
        if self._default_named(assistant_id) is not None:
            raise DefaultAssistantError(
                f"assistant {assistant_id} is graph {self._default_named(assistant_id)!r}'s "
                "default, which is read-only: create an assistant of the graph to configure it"
            )
        canonical = as_uuid(assistant_id)
        if canonical is None:
            raise AssistantNotFoundError(f"assistant {validation.shown(assistant_id)} not found")
        return canonical

    def patch_assistant(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        user_id: str | None = None,
    ) -> AssistantRecord:
        """A new version of the assistant, made active: the given fields over the active
        version's (metadata merged at the top level), as the reference patches."""
        stored = self._stored_id(assistant_id)
        checked_graph = self._graph(graph_id) if graph_id is not None else None
        changes = self._fields(config, context, metadata, graph_id=checked_graph)
        changes |= {"name": _text("name", name), "description": _text("description", description)}
        return self.store.patch_assistant(stored, user_id, changes)

    def set_assistant_version(
        self, assistant_id: str, version: int, *, user_id: str | None = None
    ) -> AssistantRecord:
        """Make one of the assistant's versions the active one (a rollback, or forward)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidPayloadError("version must be a positive integer")
        return self.store.set_assistant_version(self._stored_id(assistant_id), user_id, version)

    def delete_assistant(self, assistant_id: str, *, user_id: str | None = None) -> None:
        """Delete the assistant with its versions. Its runs in flight are not stopped: each
        carries the config it was created with, and finishes on it (docs/api.md)."""
        if not self.store.delete_assistant(self._stored_id(assistant_id), user_id):
            raise AssistantNotFoundError(f"assistant {assistant_id} not found")

    def assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        user_id: str | None = None,
    ) -> list[AssistantRecord]:
        """The assistant's versions, newest first (a default has its one)."""
        _, metadata = self._filters(None, metadata)
        name = self._default_named(assistant_id)
        if name is not None:
            default = self._default(name)
            matches = _contains(default.metadata, metadata or {}) and offset == 0
            return [default] if matches and limit > 0 else []
        canonical = as_uuid(assistant_id)
        found = None
        if canonical is not None:
            found = self.store.assistant_versions(
                canonical, user_id, metadata=metadata, limit=limit, offset=offset
            )
        if not found:
            raise AssistantNotFoundError(f"assistant {validation.shown(assistant_id)} not found")
        return found

    def search_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        limit: int = 10,
        offset: int = 0,
        user_id: str | None = None,
    ) -> list[AssistantRecord]:
        """The assistants this user may use (defaults and its own) that match, in order
        (created_at descending unless sort_by says otherwise), one page."""
        if sort_by not in (None, *SORT_BY):
            raise InvalidPayloadError(f"sort_by must be one of {', '.join(SORT_BY)}")
        graphs = self._searched_graphs(graph_id)
        name, metadata = self._filters(name, metadata)
        sort = sort_by or "created_at"
        descending = (sort_order or "desc").lower() != "asc"
        defaults = [
            record
            for record in (self._default(g) for g in graphs)
            if _matches(record, name, metadata)
        ]
        stored = self.store.search_assistants(
            user_id,
            [g for g in graphs if self.app.tasks[g].takes_run_fields],
            name=name,
            metadata=metadata,
            sort_by=sort,
            descending=descending,
            limit=offset + limit,
        )
        both = sorted(defaults + stored, key=lambda record: _sort_key(record, sort))
        if descending:
            both.reverse()
        return both[offset : offset + limit]

    def count_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> int:
        """How many assistants search_assistants would find over every page."""
        graphs = self._searched_graphs(graph_id)
        name, metadata = self._filters(name, metadata)
        defaults = sum(_matches(self._default(g), name, metadata) for g in graphs)
        graph_ids = [g for g in graphs if self.app.tasks[g].takes_run_fields]
        return defaults + self.store.count_assistants(
            user_id, graph_ids, name=name, metadata=metadata
        )

    def _filters(self, name: str | None, metadata: Any) -> tuple[str | None, dict[str, Any]]:
        """A search's name and metadata filters checked (NUL, size, nesting)."""
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        return _text("name", name), validation.json_object("metadata", metadata, limit, depth)

    def _searched_graphs(self, graph_id: str | None) -> list[str]:
        if graph_id is None:
            return self.assistants()
        if graph_id not in self.assistants():
            raise UnknownAssistantError(f"graph {validation.shown(graph_id)} not found")
        return [graph_id]


def _contains(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(key in metadata and metadata[key] == value for key, value in wanted.items())


def _matches(record: AssistantRecord, name: str | None, metadata: dict[str, Any] | None) -> bool:
    named = not name or name.lower() in record.name.lower()
    return named and _contains(record.metadata, metadata or {})


def _sort_key(record: AssistantRecord, sort: str) -> tuple[Any, str]:
    value = getattr(record, sort)
    return (value.lower() if sort in ("name", "graph_id") else value, record.assistant_id)


def _run_target(registry: AssistantRegistry, assistant_id: str | None) -> str | None:
    """What a run names, made a registered name where it is a default's id."""
    if assistant_id is None:
        return None
    return registry._default_named(assistant_id) or assistant_id

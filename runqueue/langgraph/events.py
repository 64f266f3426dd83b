"""A graph's stream chunks as run-stream events, named as LangGraph names its stream modes,
and graph values as JSON: what an HTTP layer passes through unchanged."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from langgraph.types import Interrupt, Send

from runqueue.errors import InvalidPayloadError

STREAM_MODES = ("values", "updates", "messages", "custom")
DEFAULT_STREAM_MODE = ("values",)  # as the LangGraph Agent Server


def stream_modes(stream_mode: str | Sequence[str] | None) -> list[str]:
    """The run's stream modes, checked: one name or a list of them."""
    if stream_mode is None:
        return list(DEFAULT_STREAM_MODE)
    modes = [stream_mode] if isinstance(stream_mode, str) else stream_mode
    if not isinstance(modes, list | tuple) or not modes:
        raise InvalidPayloadError(
            f"stream_mode must be one of {', '.join(STREAM_MODES)}, or a list of them"
        )
    unknown = [mode for mode in modes if mode not in STREAM_MODES]
    if unknown:
        raise InvalidPayloadError(
            f"unknown stream_mode {unknown[0]!r} (one of {', '.join(STREAM_MODES)})"
        )
    return list(dict.fromkeys(modes))


MAX_EVENT_NAME = 200  # runqueue.stream.events.EVENT_NAME


def event_name(mode: str, namespace: Sequence[str]) -> str:
    """`values`, or `values|parent:<task id>|child:<task id>` for a subgraph's chunk, as the
    LangGraph Agent Server names them. A stream event's name has no whitespace and at most
    200 characters: whitespace in a node's name is percent-encoded, and a namespace deeper
    than that keeps its innermost levels after `...`."""
    parts = [_encoded(part) for part in namespace]
    name = "|".join((mode, *parts))
    while len(name) > MAX_EVENT_NAME and parts:
        parts.pop(0)
        name = "|".join((mode, "...", *parts))
    return name[:MAX_EVENT_NAME]


def _encoded(part: str) -> str:
    return re.sub(r"[%\s]", lambda match: f"%{ord(match.group()):02X}", part)


def event_data(mode: str, chunk: Any) -> Any:
    """A chunk as JSON; a `messages` chunk is [message chunk, metadata]."""
    if mode == "messages":
        message, metadata = chunk
        return [jsonable(message), jsonable(metadata)]
    return jsonable(chunk)


def events_data(event: dict[str, Any]) -> Any:
    """An astream_events() event as the `events` mode's data."""
    return jsonable(event)


def jsonable(value: Any) -> Any:
    """Graph values as JSON: messages and pydantic models as their model_dump(), interrupts as
    {"value", "id", "response_schema"}, tuples and sets as lists; anything else unknown as its
    str()."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, Interrupt):  # as LangGraph serializes it (response_schema: 1.2+)
        out = {"value": jsonable(value.value), "id": value.id}
        if hasattr(value, "response_schema"):
            out["response_schema"] = jsonable(value.response_schema)
        return out
    if isinstance(value, Send):
        return {"node": value.node, "arg": jsonable(value.arg)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # langchain-core messages, pydantic state
        return jsonable(model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return str(value)

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

STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "custom",
    "debug",  # checkpoints and tasks, each wrapped in {"type", "timestamp", "step", "payload"}
    "tasks",  # a task's start ({"id", "name", "input", "triggers"}) and its result
    "checkpoints",  # each checkpoint written, as get_state() reads it
    "events",  # astream_events(version="v2") events: nodes, chat models, tools
)
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
    """A chunk as JSON, as the Agent Server sends it: a `messages` chunk is [message chunk,
    metadata]; a `debug` checkpoint's payload names its checkpoints as the server's
    (checkpoint, parent_checkpoint, each task's checkpoint); an `events` chunk is an
    astream_events() event (events_data)."""
    if mode == "messages":
        message, metadata = chunk
        return [jsonable(message), jsonable(metadata)]
    if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "checkpoint":
        return jsonable({**chunk, "payload": _debug_checkpoint(chunk.get("payload"))})
    if mode == "events":
        return events_data(chunk)
    return jsonable(chunk)


def events_data(event: dict) -> Any:
    """An astream_events(version="v2") event as the `events` mode's data, as the Agent Server
    sends it; None for an event it does not send as `events`: one tagged `langsmith:hidden`,
    or the root graph's own `on_chain_stream` (its chunks are the other modes' events)."""
    if "langsmith:hidden" in (event.get("tags") or ()):
        return None
    if event.get("event") == "on_chain_stream" and not event.get("parent_ids"):
        return None
    return jsonable(event)


def _debug_checkpoint(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """A debug checkpoint payload as the Agent Server sends it (its
    _preprocess_debug_checkpoint): `checkpoint` and `parent_checkpoint` from the configs, and
    a task's subgraph `state` config as its `checkpoint`. A copy: the same payload is the
    `checkpoints` mode's chunk, sent unchanged."""
    if not payload:
        return None
    return {
        **payload,
        "checkpoint": checkpoint_ref(payload.get("config")),
        "parent_checkpoint": checkpoint_ref(payload.get("parent_config")),
        "tasks": [_debug_task(task) for task in payload.get("tasks") or ()],
    }


def _debug_task(task: dict[str, Any]) -> dict[str, Any]:
    state = task.get("state")
    if not isinstance(state, dict) or not state.get("configurable"):
        return task
    task = {key: value for key, value in task.items() if key != "state"}
    task["checkpoint"] = state["configurable"]
    return task


def checkpoint_ref(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A config's checkpoint reference (the server's runnable_config_to_checkpoint): None
    unless it names a thread and a checkpoint."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    checkpoint = {
        "checkpoint_id": configurable["checkpoint_id"],
        "thread_id": configurable["thread_id"],
    }
    if "checkpoint_ns" in configurable:
        checkpoint["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    if "checkpoint_map" in configurable:
        checkpoint["checkpoint_map"] = configurable["checkpoint_map"]
    return checkpoint


def jsonable(value: Any) -> Any:
    """Graph values as JSON: messages and pydantic models as their model_dump(), interrupts as
    {"value", "id", "response_schema"}, exceptions as {"error", "message"}, tuples and sets
    as lists; anything else unknown as its str()."""
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
    if isinstance(value, BaseException):  # a task's error in `tasks`, `debug`, `checkpoints`
        return {"error": type(value).__name__, "message": str(value)}
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

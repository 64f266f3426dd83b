"""The run stream's events as runqueue writes and reads them: names and data are checked once
here, before any transport sees them, and entries become typed StreamEvents."""

from __future__ import annotations

import json
import re
from typing import Any

from runqueue.errors import EventTooLargeError, InvalidCursorError, InvalidEventError
from runqueue.records import (
    MAX_JSON_DEPTH_CEILING,
    RESERVED_EVENTS,
    LeftOut,
    RunStatus,
    StreamEvent,
)
from runqueue.stream.transport import Entry
from runqueue.validation import nesting_over

# No whitespace: a name goes on an SSE `event:` line as it is. LangGraph's own names fit
# (`values`, `messages`, `updates|agent:3f2a`).
EVENT_NAME = re.compile(r"\S{1,200}")  # fullmatch: no final newline
FAILED = frozenset({RunStatus.error, RunStatus.timeout})
MAX_CURSOR = 2**63 - 1  # event ids are 64-bit (a Redis stream id's part, a SQL BIGINT)
SIZE_SETTING = "RUNQUEUE_STREAM_MAX_EVENT_BYTES"  # Settings.stream_max_event_bytes


def _json(data: Any) -> str:
    return json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def encode_emitted(event: Any, data: Any, max_bytes: int) -> str:
    """An assistant's event checked (name, JSON, size): its data as JSON text."""
    if not isinstance(event, str) or not EVENT_NAME.fullmatch(event):
        raise InvalidEventError(f"invalid event name {event!r} (1-200 characters, no whitespace)")
    if event in RESERVED_EVENTS:
        raise InvalidEventError(
            f"event name {event!r} is reserved: runqueue writes "
            f"{', '.join(sorted(RESERVED_EVENTS))} itself"
        )
    if isinstance(data, dict | list | tuple) and nesting_over(data, MAX_JSON_DEPTH_CEILING):
        raise InvalidEventError(
            f"data of event {event!r} nests deeper than {MAX_JSON_DEPTH_CEILING} levels"
        )
    try:
        text = _json(data)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"data of event {event!r} is not JSON: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise EventTooLargeError(
            f"data of event {event!r} is {size} bytes; the limit is {max_bytes} ({SIZE_SETTING})",
            event=event,
            size=size,
            limit=max_bytes,
        )
    return text


def left_out(too_large: EventTooLargeError, read: str) -> tuple[str, str]:
    """The `gap` written in the place of an event over the size limit: the reader learns, in
    order, which event it misses, how big it was, the limit, and where to read it whole."""
    notice: LeftOut = {
        "event": too_large.event,
        "bytes": too_large.size,
        "limit": too_large.limit,
        "setting": SIZE_SETTING,
        "read": read,
    }
    return "gap", _json({"left_out": notice})


def metadata(run_id: str, thread_id: str, attempt: int) -> tuple[str, str]:
    """The event an attempt opens the stream with."""
    return "metadata", _json({"run_id": run_id, "thread_id": thread_id, "attempt": attempt})


def ending(
    status: RunStatus, error: str | None = None, error_type: str | None = None
) -> list[tuple[str, str]]:
    """The last events of a run: `error` if it failed, then `end`."""
    entries: list[tuple[str, str]] = []
    if status in FAILED:
        message = error or status.value
        name = error_type or ("TimeoutError" if status is RunStatus.timeout else "RunError")
        if message.startswith(f"{name}: "):
            message = message[len(name) + 2 :]
        entries.append(("error", _json({"error": name, "message": message})))
    entries.append(("end", _json({"status": status.value})))
    return entries


def decode(entry: Entry) -> StreamEvent:
    return StreamEvent(id=str(entry.seq), event=entry.event, data=json.loads(entry.data))


def gap(after: int, next_seq: int | None) -> StreamEvent:
    """Events after `after` were trimmed (MAXLEN) or expired before this reader got them;
    `next` is the first one still there (None: the stream itself expired)."""
    return StreamEvent(id=None, event="gap", data={"after": str(after), "next": _id(next_seq)})


def expired_end(status: RunStatus) -> StreamEvent:
    """The `end` of a finished run whose stream is past its retention."""
    return StreamEvent(id=None, event="end", data={"status": status.value})


def _id(seq: int | None) -> str | None:
    return None if seq is None else str(seq)


FROM_THE_START = "-1"  # the SDKs' Last-Event-ID for a whole replay


def cursor(after: str | int | None) -> int | None:
    """A reader's `after` (an event id it was given) as a number; None: from the start, also
    for "-1", what the official clients send to replay a run's stream whole (the JS client's
    useStream, rejoining a run after a page reload)."""
    if after is None or (isinstance(after, str) and after.strip() == FROM_THE_START):
        return None
    if isinstance(after, bool) or not isinstance(after, str | int):
        raise InvalidCursorError(f"invalid stream cursor {after!r} (an event id such as '42')")
    text = str(after).strip()
    if not text.isdigit() or not text.isascii() or int(text) > MAX_CURSOR:
        raise InvalidCursorError(f"invalid stream cursor {after!r} (an event id such as '42')")
    return int(text)

"""Checking what callers give before anything is written: ids, strategies, JSON payloads."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import uuid_utils

from runqueue.errors import (
    InvalidAssistantNameError,
    InvalidPayloadError,
    InvalidRunIdError,
    InvalidStatusError,
    UnsupportedStrategyError,
)
from runqueue.records import (
    MAX_JSON_DEPTH_CEILING,
    AbortAction,
    DisconnectMode,
    MultitaskStrategy,
    RunStatus,
    ThreadStatus,
)

# Every pattern is applied with fullmatch(): `$` after match() also matches before a final
# newline, and "t\n" would pass as a thread id (then break an HTTP header, or a column).
THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
StatusT = TypeVar("StatusT", RunStatus, ThreadStatus)
# An assistant's name is part of its broker queue's name, which the embedded broker puts in
# file names and RabbitMQ limits to 255 bytes: Celery task names ("module.function") fit.
ASSISTANT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shown(value: object, limit: int = 60) -> str:
    """A bad value as an error quotes it: repr, cut to `limit` characters (an error is one
    line, whatever was typed)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def assistant_name(value: Any) -> str:
    """InvalidAssistantNameError unless `value` can name an assistant and so its queue."""
    if not isinstance(value, str) or not ASSISTANT_NAME_PATTERN.fullmatch(value):
        raise InvalidAssistantNameError(
            f"assistant name {shown(value)} must be 1-128 letters, digits, '_', '.', ':' or "
            "'-' (it names the assistant's broker queue)"
        )
    return value


def new_run_id() -> str:
    """A UUIDv7 (uuid-utils): time-ordered, and monotonic within a process, so ids break ties
    between equal timestamps in creation order."""
    return str(uuid_utils.uuid7())


def is_run_id(value: Any) -> bool:
    return isinstance(value, str) and UUID_PATTERN.fullmatch(value.lower()) is not None


def run_id(value: Any) -> str:
    if not is_run_id(value):
        raise InvalidRunIdError(f"invalid run id: {shown(value)} (expected a UUID)")
    return value.lower()


RUN_ID_PREFIX_PATTERN = re.compile(r"[0-9a-f][0-9a-f-]{5,35}")
MIN_RUN_ID_PREFIX = 6
MAX_PAGE = 2**31 - 1  # a larger limit or offset overflows the databases' integers


def run_id_or_prefix(value: Any) -> str:
    """A full run id, or the start of one (at least 6 characters) that the CLI resolves;
    lower-cased, as run ids are stored."""
    if is_run_id(value):
        return value.lower()
    if isinstance(value, str) and RUN_ID_PREFIX_PATTERN.fullmatch(value.lower()):
        return value.lower()
    raise InvalidRunIdError(
        f"invalid run id: {shown(value)} (expected a UUID, or a unique prefix of one of at least "
        f"{MIN_RUN_ID_PREFIX} characters)"
    )


def page_limit(value: Any) -> int:
    """How many rows a listing returns: 0 to MAX_PAGE (a negative limit is 'all' to SQLite
    and an error to PostgreSQL)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PAGE:
        raise InvalidPayloadError(
            f"limit must be an integer between 0 and {MAX_PAGE}, not {shown(value)}"
        )
    return value


def is_thread_id(value: Any) -> bool:
    return isinstance(value, str) and THREAD_ID_PATTERN.fullmatch(value) is not None


def thread_id(value: Any) -> str:
    if not is_thread_id(value):
        raise InvalidRunIdError(
            f"invalid thread id: {shown(value)} (1-128 characters: letters, digits, . _ : @ / -)"
        )
    return value


def user_id(value: Any) -> str | None:
    """A user id: 1-128 printable characters (no newline or other control character: ids
    are logged and printed)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
        raise InvalidRunIdError(f"invalid user id: {shown(value)} (1-128 printable characters)")
    return value


def strategy(value: Any) -> MultitaskStrategy:
    try:
        return MultitaskStrategy(value)
    except ValueError:
        choices = ", ".join(s.value for s in MultitaskStrategy)
        raise UnsupportedStrategyError(
            f"unsupported multitask strategy {shown(value)} (choose one of: {choices})"
        ) from None


def disconnect_mode(value: Any) -> DisconnectMode:
    try:
        return DisconnectMode(value)
    except ValueError:
        raise InvalidPayloadError(
            f"invalid on_disconnect {shown(value)} (cancel or continue)"
        ) from None


def abort_action(value: Any) -> AbortAction:
    try:
        return AbortAction(value)
    except ValueError:
        raise InvalidPayloadError(
            f"invalid cancel action {shown(value)} (interrupt or rollback)"
        ) from None


def _status_of(kind: type[StatusT], what: str, value: Any) -> StatusT:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(s.value for s in kind)
        raise InvalidStatusError(f"unknown {what} {shown(value)} (one of: {choices})") from None


def status(value: Any) -> RunStatus:
    return _status_of(RunStatus, "run status", value)


def if_not_exists(value: Any) -> bool:
    """True: a run for an unknown thread creates it ("create"); False: refused ("reject")."""
    if value not in ("create", "reject"):
        raise InvalidPayloadError(f"invalid if_not_exists {shown(value)} (create or reject)")
    return value == "create"


MAX_AFTER_SECONDS = 366 * 24 * 3600.0  # a delayed run starts within a year


def after_seconds(value: Any) -> float | None:
    """A delayed run's delay in seconds (None, 0 or negative: not delayed, as the reference
    server takes them); InvalidPayloadError unless a number up to MAX_AFTER_SECONDS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayloadError(f"invalid after_seconds {shown(value)} (a number of seconds)")
    if not value <= MAX_AFTER_SECONDS:  # NaN fails it too
        raise InvalidPayloadError(
            f"invalid after_seconds {shown(value)} (at most {MAX_AFTER_SECONDS:.0f} seconds)"
        )
    return float(value) if value > 0 else None


def thread_status(value: Any) -> ThreadStatus:
    return _status_of(ThreadStatus, "thread status", value)


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON text a person gave (a CLI option, a line of a file), decoded; InvalidPayloadError
    saying why not, also for nesting so deep that the decoder itself gives up (it raises
    RecursionError, not a decoding error)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayloadError(f"{what} is not JSON: {exc}") from None
    except RecursionError:  # the decoder gives up on nesting this deep
        raise InvalidPayloadError(f"{what} nests too deep to decode") from None


def nesting_over(value: Any, limit: int) -> int | None:
    """The depth at which `value` first nests deeper than `limit` containers (objects and
    arrays; `{"a": 1}` is 1 deep), or None if it does not. Walked with a list, not by
    recursion, so that no depth can raise RecursionError here."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return depth
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return None


def check_nesting(name: str, value: Any, limit: int) -> None:
    """InvalidPayloadError if `value` nests deeper than `limit` (see nesting_over)."""
    if isinstance(value, dict | list | tuple) and nesting_over(value, limit) is not None:
        raise InvalidPayloadError(
            f"{name} nests deeper than {limit} levels of objects and arrays "
            "(the limit is Settings.max_json_depth, RUNQUEUE_MAX_JSON_DEPTH)"
        )


def json_object(
    name: str, value: Any, max_bytes: int, max_depth: int = MAX_JSON_DEPTH_CEILING
) -> dict[str, Any]:
    """A JSON object that round-trips exactly (no NaN/Infinity, no objects) within the size
    and nesting limits. The nesting is checked first: json.dumps itself raises
    RecursionError for a deep enough value."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayloadError(f"{name} must be a JSON object, got {type(value).__name__}")
    check_nesting(name, value, min(max_depth, MAX_JSON_DEPTH_CEILING))
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayloadError(f"{name} is not JSON-serializable: {exc}") from None
    if len(text.encode()) > max_bytes:
        raise InvalidPayloadError(f"{name} is {len(text.encode())} bytes; the limit is {max_bytes}")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayloadError(
            f"{name} contains a lone UTF-16 surrogate, which is not valid UTF-8"
        ) from None
    if "\x00" in text or "\\u0000" in text:
        raise InvalidPayloadError(f"{name} contains a NUL character, which databases refuse")
    return json.loads(text)


def checkpoint_id(name: str, value: Any) -> str:
    """A LangGraph checkpoint id (a UUID), lower-cased as LangGraph writes them;
    InvalidPayloadError naming the field otherwise (the reference answers 422 too)."""
    if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value.lower()):
        raise InvalidPayloadError(
            f"{name} {shown(value)} is not a checkpoint id (a UUID, as a thread state's "
            "checkpoint.checkpoint_id)"
        )
    return value.lower()


# Configurable keys a graph run sets itself: a caller's would move the run to another
# checkpoint or namespace. A fork is the run's own option, `checkpoint_id`: the HTTP API
# takes config.configurable.checkpoint_id as one, as the reference does (run_creation.py).
RUN_SET_KEYS = frozenset({"checkpoint_ns", "checkpoint_id", "checkpoint_map"})


def run_set_keys(values: Any) -> list[str]:
    """The keys of a graph run's configurable (or its context, mirrored into it) that the
    run sets itself: refused from a caller."""
    return sorted(k for k in values if k in RUN_SET_KEYS or str(k).startswith("__"))

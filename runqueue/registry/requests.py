"""What a caller asks for: a run's options (RunOptions), and one run of a batch (RunRequest)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from runqueue import validation
from runqueue.errors import InvalidPayloadError, RunQueueError
from runqueue.records import DisconnectMode, MultitaskStrategy


class RunOptions(TypedDict, total=False):
    """The keyword options of create() and create_or_reject(), on both managers. Left out:
    on_disconnect "continue", no metadata, no kwargs, multitask_strategy "reject", no
    follow-up run, no user, if_not_exists "create", own_thread False (runs of several
    users may share a thread), after None (not delayed)."""

    on_disconnect: DisconnectMode | str
    metadata: dict[str, Any] | None
    kwargs: dict[str, Any] | None  # the assistant's keyword arguments (JSON)
    multitask_strategy: MultitaskStrategy | str
    follow_up_to_run_id: str | None
    user_id: str | None
    if_not_exists: str  # "create" (the default): a new thread id makes a thread; "reject"
    own_thread: bool  # True: the thread must be new or user_id's (the HTTP API's isolation)
    webhook: str | None  # a URL POSTed the run once it is final (runqueue/webhooks.py)
    after: float | None  # seconds: a delayed run, due this long after its creation


@dataclass(frozen=True)
class RunRequest:
    """One run for create_many(): create_or_reject()'s arguments, with its defaults."""

    thread_id: str
    assistant_id: str | None = None  # None: the default assistant
    kwargs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    multitask_strategy: MultitaskStrategy | str = MultitaskStrategy.reject
    on_disconnect: DisconnectMode | str = DisconnectMode.continue_
    follow_up_to_run_id: str | None = None
    user_id: str | None = None
    if_not_exists: str = "create"
    own_thread: bool = False
    webhook: str | None = None
    after: float | None = None  # seconds: a delayed run

    @classmethod
    def from_json(cls, value: Any) -> RunRequest:
        """A request from a decoded JSON object (a line of `runqueue submit --from`):
        InvalidPayloadError for anything but an object, an unknown field, no thread_id or a
        non-boolean own_thread. The values themselves are checked by create_many()."""
        if not isinstance(value, Mapping):
            raise InvalidPayloadError(f"a run request is a JSON object, not {type(value).__name__}")
        unknown = sorted(set(value) - REQUEST_FIELDS)
        if unknown:
            raise InvalidPayloadError(
                f"unknown field {validation.shown(unknown[0])} "
                f"(fields: {', '.join(sorted(REQUEST_FIELDS))})"
            )
        if "thread_id" not in value:
            raise InvalidPayloadError("thread_id is required")
        if not isinstance(value.get("own_thread", False), bool):
            raise InvalidPayloadError(
                f"own_thread must be true or false, not {validation.shown(value['own_thread'])}"
            )
        return cls(**value)

    def options(self) -> RunOptions:
        """Its options as create_or_reject() takes them."""
        return RunOptions(
            kwargs=self.kwargs,
            metadata=self.metadata,
            multitask_strategy=self.multitask_strategy,
            on_disconnect=self.on_disconnect,
            follow_up_to_run_id=self.follow_up_to_run_id,
            user_id=self.user_id,
            if_not_exists=self.if_not_exists,
            own_thread=self.own_thread,
            webhook=self.webhook,
            after=self.after,
        )


REQUEST_FIELDS = frozenset(field.name for field in fields(RunRequest))


def at_request(index: int, error: RunQueueError) -> RunQueueError:
    """The error of request `index` of a batch: the same type and attributes, saying which
    request it was (in its message and its `index` attribute)."""
    located = type(error)(f"request {index}: {error}")
    located.__dict__.update(vars(error))  # what it carries (the field at fault, ...)
    located.index = index
    return located

"""Crons: runs created on a schedule, with the thread's strategy applied at each fire.
Created, read, searched, counted, changed and deleted here; fired by every worker's
scheduler (runqueue/worker/cron_scheduler.py), each tick exactly once across the fleet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from runqueue import validation
from runqueue.errors import CronNotFoundError, InvalidPayloadError, RunQueueError
from runqueue.records import CronCompletion, CronFire, CronRecord, MultitaskStrategy
from runqueue.registry.assistants import with_assistant
from runqueue.registry.base import RegistryBase
from runqueue.store import CRON_SORT_KEYS, NewCron, check_schedule, check_timezone
from runqueue.worker.task import RunTask

_UNSET: Any = object()  # update_cron: "leave end_time as it is" (None clears it)


def checked_end_time(value: Any) -> datetime | None:
    """A cron's end: an aware datetime (a naive one is UTC), or None: no end."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidPayloadError(f"invalid end_time: {validation.shown(value)}") from None
    if not isinstance(value, datetime):
        raise InvalidPayloadError(f"end_time must be a datetime, not {validation.shown(value)}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def completion(value: Any, thread_id: str | None) -> str | None:
    """on_run_completed: a stateless cron's (default `delete`); a thread's cron has none."""
    if thread_id is not None:
        if value is not None:
            raise InvalidPayloadError("on_run_completed is for stateless crons, not a thread's")
        return None
    try:
        return CronCompletion(value or CronCompletion.delete).value
    except ValueError:
        raise InvalidPayloadError(
            f"invalid on_run_completed {validation.shown(value)} (delete or keep)"
        ) from None


def is_cron_id(value: Any) -> bool:
    """A cron id is a UUID, as create_cron makes them."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _nameable(assistant_id: str | None, thread_id: str | None) -> bool:
    """Whether search filters can match a cron at all: an assistant or thread id no cron
    could have (malformed, a NUL) finds none, without asking the database."""
    if assistant_id is not None:
        try:
            validation.assistant_name(assistant_id)
        except RunQueueError:
            return False
    return thread_id is None or validation.is_thread_id(thread_id)


class CronRegistry(RegistryBase):
    """The cron methods; another user's cron reads as no cron."""

    def create_cron(
        self,
        assistant_id: str | None,
        *,
        schedule: str,
        thread_id: str | None = None,
        kwargs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        timezone: str | None = None,
        end_time: datetime | str | None = None,
        enabled: bool = True,
        on_run_completed: CronCompletion | str | None = None,
        multitask_strategy: MultitaskStrategy | str = MultitaskStrategy.enqueue,
        webhook: str | None = None,
        payload: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> CronRecord:
        """A cron that creates a run of `assistant_id` with `kwargs` at each tick of
        `schedule` (croniter syntax; a sixth field is seconds) in `timezone` (IANA; None:
        UTC), until `end_time`: on `thread_id` (which must exist, and be user_id's), or on a
        new thread each time (on_run_completed `delete`, the default, deletes it once its
        run has ended; `keep` keeps it). `payload`: the request as given, shown back."""
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        if thread_id is not None:
            thread_id = validation.thread_id(thread_id)
        # A stored assistant's active version is merged into the runs' kwargs now, as a run's
        # create merges it (docs/api.md, "Crons"); a name or a default's id names its graph.
        name, stored = self.assistant_for_run(assistant_id, user_id=user_id)  # type: ignore[attr-defined]
        kwargs = validation.json_object("kwargs", kwargs, limit, depth)
        if stored is not None:
            kwargs = with_assistant(stored, kwargs)
        task = self.app.tasks[name]
        assert isinstance(task, RunTask)
        task.check_kwargs(thread_id or "cron-check", kwargs)
        new = NewCron(
            cron_id=str(uuid.uuid4()),
            assistant_id=name,
            thread_id=thread_id,
            user_id=validation.user_id(user_id),
            schedule=check_schedule(schedule),
            timezone=check_timezone(timezone),
            end_time=checked_end_time(end_time),
            enabled=self._enabled(enabled),
            on_run_completed=completion(on_run_completed, thread_id),
            payload=validation.json_object("payload", payload, limit, depth),
            kwargs=kwargs,
            metadata=validation.json_object("metadata", metadata, limit, depth),
            multitask_strategy=validation.strategy(multitask_strategy).value,
            webhook=self._webhook(webhook),  # type: ignore[attr-defined]  (RequestChecks')
        )
        return self.store.create_cron(new)

    @staticmethod
    def _enabled(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidPayloadError(f"enabled must be true or false, not {value!r}")
        return value

    def get_cron(self, cron_id: str, *, user_id: str | None = None) -> CronRecord | None:
        """The cron; None for an unknown or malformed id, or another user's cron."""
        if not is_cron_id(cron_id):
            return None
        return self.store.get_cron(cron_id, validation.user_id(user_id))

    def search_crons(
        self,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[CronRecord]:
        """Crons matching every filter given; newest first by default."""
        if sort_by not in CRON_SORT_KEYS:
            raise InvalidPayloadError(
                f"invalid sort_by {validation.shown(sort_by)} ({', '.join(CRON_SORT_KEYS)})"
            )
        metadata = self._filter(metadata)
        if not _nameable(assistant_id, thread_id):
            return []
        return self.store.search_crons(
            user_id=validation.user_id(user_id),
            assistant_id=assistant_id,
            thread_id=thread_id,
            enabled=enabled,
            metadata=metadata,
            limit=validation.page_limit(limit),
            offset=validation.page_limit(offset),
            sort_by=sort_by,
            descending=descending,
        )

    def _filter(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is None:
            return None
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        return validation.json_object("metadata", metadata, limit, depth)

    def count_crons(
        self,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> int:
        """How many crons search_crons() would find with these filters, unpaged."""
        metadata = self._filter(metadata)
        if not _nameable(assistant_id, thread_id):
            return 0
        return self.store.count_crons(
            user_id=validation.user_id(user_id),
            assistant_id=assistant_id,
            thread_id=thread_id,
            metadata=metadata,
        )

    def update_cron(
        self,
        cron_id: str,
        *,
        user_id: str | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        end_time: datetime | str | None = _UNSET,
        enabled: bool | None = None,
        kwargs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        on_run_completed: CronCompletion | str | None = None,
        webhook: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> CronRecord:
        """Change what is given (end_time None clears it); a change of schedule, timezone,
        end_time or enabled moves the next tick to the first one from now.
        CronNotFoundError for an unknown cron, or another user's."""
        current = self.get_cron(cron_id, user_id=user_id)
        if current is None:
            raise CronNotFoundError(f"cron {cron_id} not found")
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        changes: dict[str, Any] = {}
        if schedule is not None:
            changes["schedule"] = check_schedule(schedule)
        if timezone is not None:
            changes["timezone"] = check_timezone(timezone)
        if end_time is not _UNSET:
            changes["end_time"] = checked_end_time(end_time)
        if enabled is not None:
            changes["enabled"] = self._enabled(enabled)
        if kwargs is not None:
            changes["kwargs"] = validation.json_object("kwargs", kwargs, limit, depth)
            self.app.tasks[current.assistant_id].check_kwargs(
                current.thread_id or "cron-check", changes["kwargs"]
            )
        if metadata is not None:
            changes["metadata"] = validation.json_object("metadata", metadata, limit, depth)
        if on_run_completed is not None:
            changes["on_run_completed"] = completion(on_run_completed, current.thread_id)
        if webhook is not None:
            changes["webhook"] = self._webhook(webhook)  # type: ignore[attr-defined]  (RequestChecks')
        if payload is not None:
            changes["payload"] = validation.json_object("payload", payload, limit, depth)
        updated = self.store.update_cron(current.cron_id, validation.user_id(user_id), changes)
        if updated is None:
            raise CronNotFoundError(f"cron {cron_id} not found")
        return updated

    def delete_cron(self, cron_id: str, *, user_id: str | None = None) -> None:
        """Delete the cron (the runs it made stay). CronNotFoundError if there is no such
        cron of this user's."""
        if self.get_cron(cron_id, user_id=user_id) is None or not self.store.delete_cron(
            cron_id, validation.user_id(user_id)
        ):
            raise CronNotFoundError(f"cron {cron_id} not found")

    def cron_fires(self, cron_id: str, *, limit: int = 20) -> list[CronFire]:
        """The cron's latest fires (tick, run or why none), newest first."""
        return self.store.cron_fires(cron_id, validation.page_limit(limit))

    def cron_of_run(self, run_id: str) -> CronFire | None:
        """The fire that created this run (its cron and tick); None if no cron made it."""
        if not validation.is_run_id(run_id):
            return None
        return self.store.fire_of_run(validation.run_id(run_id))

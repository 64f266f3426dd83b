"""The bodies of the cron routes, with the reference server's field names: a cron's request
carries a run's fields (made into the fired runs' kwargs as a run's are) and its own
(schedule, timezone, end_time, enabled, on_run_completed, webhook)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from runqueue.api.schemas import (
    Breakpoints,
    Json,
    MultitaskStrategyName,
    RunCreate,
    StreamModeName,
    Strict,
)
from runqueue.records import CronRecord
from runqueue.registry import MAX_PAGE

# The fields of a cron's request that describe its runs: a RunCreate is made of them.
RUN_FIELDS = (
    "assistant_id",
    "input",
    "config",
    "context",
    "metadata",
    "interrupt_before",
    "interrupt_after",
    "stream_mode",
    "stream_subgraphs",
    "stream_resumable",
    "durability",
    "checkpoint_during",
)
CronSortName = Literal[
    "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date", "end_time"
]
CRON_FIELDS = (
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "payload",
    "user_id",
    "next_run_date",
    "metadata",
    "enabled",
)


class CronRunFields(Strict):
    """What each fired run gets, as a run's request gives it."""

    input: Any = None
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    interrupt_before: Breakpoints | None = None
    interrupt_after: Breakpoints | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    webhook: str | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: bool | None = None
    timezone: str | None = Field(None, max_length=64)


class CronCreate(CronRunFields):
    """POST /runs/crons and POST /threads/{thread_id}/runs/crons."""

    assistant_id: str = Field(min_length=1, max_length=200)
    schedule: str = Field(min_length=1, max_length=200)
    end_time: datetime | None = None
    multitask_strategy: MultitaskStrategyName = "enqueue"


class CronPatch(CronRunFields):
    """PATCH /runs/crons/{cron_id}: what is given changes; end_time null clears it."""

    schedule: str | None = Field(None, min_length=1, max_length=200)
    end_time: datetime | None = None


def run_body(assistant_id: str, payload: dict[str, Any]) -> RunCreate:
    """The run request a cron's payload describes: its fired runs' kwargs are made of it
    exactly as a run's are (run_creation.run_kwargs)."""
    fields = {name: payload[name] for name in RUN_FIELDS if payload.get(name) is not None}
    return RunCreate(**(fields | {"assistant_id": assistant_id}))


class CronSearch(Strict):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: Json | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_PAGE)
    sort_by: CronSortName | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[Literal[CRON_FIELDS]] | None = None  # type: ignore[valid-type]


class CronCount(Strict):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: Json | None = None


class Cron(BaseModel):
    cron_id: str
    assistant_id: str
    thread_id: str | None
    on_run_completed: Literal["delete", "keep"] | None
    end_time: datetime | None
    schedule: str
    timezone: str | None
    created_at: datetime
    updated_at: datetime
    payload: Json
    user_id: str | None
    next_run_date: datetime | None
    metadata: Json
    enabled: bool

    @classmethod
    def of(cls, cron: CronRecord) -> Cron:
        return cls(
            cron_id=cron.cron_id,
            assistant_id=cron.assistant_id,
            thread_id=cron.thread_id,
            on_run_completed=cron.on_run_completed.value if cron.on_run_completed else None,
            end_time=cron.end_time,
            schedule=cron.schedule,
            timezone=cron.timezone,
            created_at=cron.created_at,
            updated_at=cron.updated_at,
            payload=cron.payload,
            user_id=cron.user_id,
            next_run_date=cron.next_run_date,
            metadata=cron.metadata,
            enabled=cron.enabled,
        )

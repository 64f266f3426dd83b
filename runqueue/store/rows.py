"""Turning database rows into the public records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from runqueue.records import (
    AbortAction,
    Checkpoint,
    DisconnectMode,
    MultitaskStrategy,
    PruneStrategy,
    RunEvent,
    RunRecord,
    RunStatus,
    ThreadRecord,
    ThreadTtl,
)
from runqueue.store.models import CheckpointRow, Run, RunEventRow, Thread

RUN_COLUMNS = tuple(Run.__table__.columns)
EVENT_COLUMNS = tuple(RunEventRow.__table__.columns)
THREAD_COLUMNS = tuple(Thread.__table__.columns)
CHECKPOINT_COLUMNS = tuple(CheckpointRow.__table__.columns)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; runqueue writes UTC, so say so."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def run_record(row: Row[Any]) -> RunRecord:
    return run_record_of(row._mapping)


def run_record_of(m: Mapping[str, Any]) -> RunRecord:
    """A run's record from its columns by name (a row's mapping, or a driver's dict row)."""
    return RunRecord(
        run_id=m["run_id"],
        thread_id=m["thread_id"],
        assistant_id=m["assistant_id"],
        status=RunStatus(m["status"]),
        multitask_strategy=MultitaskStrategy(m["multitask_strategy"])
        if m["multitask_strategy"]
        else None,
        on_disconnect=DisconnectMode(m["on_disconnect"]),
        metadata=m["metadata"] or {},
        kwargs=m["kwargs"] or {},
        result=m["result"],
        error=m["error"],
        created_at=aware(m["created_at"]),
        updated_at=aware(m["updated_at"]),
        started_at=aware(m["started_at"]),
        ended_at=aware(m["ended_at"]),
        worker=m["worker"],
        follow_up_to_run_id=m["follow_up_to_run_id"],
        user_id=m["user_id"],
        abort_action=AbortAction(m["abort_action"]) if m["abort_action"] else None,
        attempt=m["attempt"],
        worker_losses=m["worker_losses"],
        webhook=m.get("webhook"),
        due_at=aware(m["due_at"]),
    )


def run_event(row: Row[Any]) -> RunEvent:
    m = row._mapping
    return RunEvent(
        run_id=m["run_id"],
        thread_id=m["thread_id"],
        status=RunStatus(m["status"]),
        at=aware(m["at"]),
        worker=m["worker"],
        detail=m["detail"],
    )


def thread_record(row: Row[Any]) -> ThreadRecord:
    m = row._mapping
    return ThreadRecord(
        thread_id=m["thread_id"],
        user_id=m["user_id"],
        metadata=m["metadata"] or {},
        created_at=aware(m["created_at"]),
        updated_at=aware(m["updated_at"]),
        ttl=thread_ttl(m),
    )


def thread_ttl(m: Mapping[str, Any]) -> ThreadTtl | None:
    minutes = m.get("ttl_minutes")
    if minutes is None:
        return None
    return ThreadTtl(PruneStrategy(m.get("ttl_strategy") or PruneStrategy.delete), minutes)


def checkpoint(row: Row[Any]) -> Checkpoint:
    m = row._mapping
    return Checkpoint(
        checkpoint_id=m["checkpoint_id"],
        thread_id=m["thread_id"],
        run_id=m["run_id"],
        values=m["values"],
        created_at=aware(m["created_at"]),
    )

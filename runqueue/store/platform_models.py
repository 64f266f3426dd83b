"""The tables of crons, completion webhooks and stored assistants (migrations 0012 to 0014),
beside the runs' own in models.py, on the same declarative base."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from runqueue.store.model_types import Base, JSONType, Timestamp


class CronRow(Base):
    """A cron (POST /runs/crons, /threads/{id}/runs/crons): a run made on its schedule.
    next_fire_at is the tick the scheduler fires next (NULL: no more, end_time passed)."""

    __tablename__ = "crons"

    cron_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(String(200))
    # A thread's cron goes with its thread; NULL: stateless, a new thread each fire.
    thread_id: Mapped[str | None] = mapped_column(
        ForeignKey("threads.thread_id", ondelete="CASCADE")
    )
    user_id: Mapped[str | None] = mapped_column(String(128))
    schedule: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    end_time: Mapped[datetime | None] = mapped_column(Timestamp)
    enabled: Mapped[bool] = mapped_column(Boolean)
    on_run_completed: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    multitask_strategy: Mapped[str | None] = mapped_column(String(16))
    webhook: Mapped[str | None] = mapped_column(Text)
    next_fire_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        Index(
            "crons_due",
            "next_fire_at",
            postgresql_where=text("enabled"),
            sqlite_where=text("enabled"),
        ),
        Index("crons_user_created", "user_id", "created_at"),
        Index("crons_thread", "thread_id"),
    )


class CronFireRow(Base):
    """One row per cron and tick: the primary key is the exactly-once. The scheduler inserts
    it in the same transaction as the run it fires, so a tick is fired once, or not at all."""

    __tablename__ = "cron_fires"

    cron_id: Mapped[str] = mapped_column(
        ForeignKey("crons.cron_id", ondelete="CASCADE"), primary_key=True
    )
    tick: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    fired_at: Mapped[datetime] = mapped_column(Timestamp)
    thread_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(36))  # NULL: refused (thread busy)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    # on_run_completed "delete": set once the scheduler deleted the fire's thread.
    thread_deleted: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (Index("cron_fires_run", "run_id"),)


class AssistantRow(Base):
    """An assistant made with POST /assistants: its active version's fields (migration 0014).
    Registered graphs' default assistants are not stored (runqueue/registry/assistants.py)."""

    __tablename__ = "assistants"

    assistant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    graph_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(128))  # its owner (None: auth off)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer)  # the active one, in assistant_versions
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        Index("assistants_user_created", "user_id", "created_at"),
        Index("assistants_graph", "graph_id"),
    )


class AssistantVersionRow(Base):
    """Every version of a stored assistant, as it was written: a PATCH adds one, POST
    .../latest makes one active again. Deleted with its assistant."""

    __tablename__ = "assistant_versions"

    assistant_id: Mapped[str] = mapped_column(
        ForeignKey("assistants.assistant_id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    graph_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class WebhookDeliveryRow(Base):
    """A run's webhook to deliver: the outbox row the trigger `runs_webhook_outbox` inserts
    when the run reaches a final status (migration 0012), claimed by one worker at a time
    (lease_token, lease_expires_at) until it is delivered or failed."""

    __tablename__ = "webhook_deliveries"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(Timestamp)  # when the run ended
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    give_up_at: Mapped[datetime | None] = mapped_column(Timestamp)  # set at the first claim
    lease_token: Mapped[str | None] = mapped_column(String(36))  # the claiming worker's
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    worker: Mapped[str | None] = mapped_column(String(255))  # the last claimant
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )


class WebhookAttemptRow(Base):
    """One POST of a run's webhook: written when it starts (`sending`), then its outcome."""

    __tablename__ = "webhook_attempts"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.run_id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    worker: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))  # sending|delivered|retry|failed|lost
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)

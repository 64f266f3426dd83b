"""The tables. Their constraints carry the invariants; Alembic creates them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from runqueue.records import PruneStrategy
from runqueue.store.model_types import AutoId, Base, JSONType, Timestamp
from runqueue.store.platform_models import (  # on Base too: the metadata names every table
    AssistantRow as AssistantRow,
)
from runqueue.store.platform_models import (
    AssistantVersionRow as AssistantVersionRow,
)
from runqueue.store.platform_models import (
    CronFireRow as CronFireRow,
)
from runqueue.store.platform_models import (
    CronRow as CronRow,
)
from runqueue.store.platform_models import (
    WebhookAttemptRow as WebhookAttemptRow,
)
from runqueue.store.platform_models import (
    WebhookDeliveryRow as WebhookDeliveryRow,
)

ONE_RUNNING_PER_THREAD = "status = 'running'"
# A delayed run waiting for its due time, not yet published (the due-run loop's rows).
DELAYED_UNPUBLISHED = (
    "status = 'pending' AND dispatch_state = 'queued' AND dispatched_at IS NULL "
    "AND due_at IS NOT NULL"
)
# A thread's ttl strategy is one of PruneStrategy's values (migration 0010 writes the same).
TTL_STRATEGIES = f"ttl_strategy IN ({', '.join(repr(s.value) for s in PruneStrategy)})"


class Thread(Base):
    __tablename__ = "threads"

    thread_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    # Its time to live (POST /threads `ttl`): pruned with ttl_strategy once idle ttl_minutes;
    # ttl_swept_at: when keep_latest last pruned it (swept again only after new activity).
    ttl_strategy: Mapped[str | None] = mapped_column(String(16))
    ttl_minutes: Mapped[float | None] = mapped_column(Double)
    ttl_swept_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index("threads_user_created", "user_id", "created_at"),
        Index(
            "threads_ttl",
            "ttl_minutes",
            postgresql_where=text("ttl_minutes IS NOT NULL"),
            sqlite_where=text("ttl_minutes IS NOT NULL"),
        ),
        CheckConstraint(TTL_STRATEGIES, name="threads_ttl_strategy"),
    )


class ApiKey(Base):
    """An HTTP API key: only its SHA-256 is kept. Revoking sets revoked_at; every request
    reads this row, so a revoked key is refused at once by every API process."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the key
    user_id: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole key
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Run(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # = Celery task id
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.thread_id"))
    assistant_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    multitask_strategy: Mapped[str | None] = mapped_column(String(16))
    on_disconnect: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    worker: Mapped[str | None] = mapped_column(String(255))
    follow_up_to_run_id: Mapped[str | None] = mapped_column(String(36))
    abort_action: Mapped[str | None] = mapped_column(String(16))  # set by cancel
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    dispatch_state: Mapped[str] = mapped_column(String(16))  # held | queued
    dispatched_at: Mapped[datetime | None] = mapped_column(Timestamp)  # NULL: publish failed
    next_publish_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the relay's next look
    publish_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claim_token: Mapped[str | None] = mapped_column(String(36))  # the executing attempt
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Deliveries and attempts of this run that took their worker down (a pool child that
    # died before its claim, a lease that expired): Settings.max_worker_losses ends it.
    worker_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The URL POSTed the run once it is final (migration 0012: a trigger records the delivery
    # in webhook_deliveries in the transaction that writes the final status).
    webhook: Mapped[str | None] = mapped_column(Text)
    # A delayed run (after_seconds): not published, and not claimable, before this time
    # (the database's clock). NULL: due at once.
    due_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    __table_args__ = (
        # The invariant: at most one running run per thread, on every backend.
        Index(
            "runs_one_running_per_thread",
            "thread_id",
            unique=True,
            postgresql_where=text(ONE_RUNNING_PER_THREAD),
            sqlite_where=text(ONE_RUNNING_PER_THREAD),
        ),
        Index("runs_thread_created", "thread_id", "created_at", "run_id"),
        Index(
            "runs_inflight",
            "thread_id",
            "status",
            postgresql_where=text("status IN ('pending', 'running')"),
            sqlite_where=text("status IN ('pending', 'running')"),
        ),
        Index(
            "runs_outbox",
            "next_publish_at",
            postgresql_where=text("status = 'pending' AND dispatch_state = 'queued'"),
            sqlite_where=text("status = 'pending' AND dispatch_state = 'queued'"),
        ),
        Index(
            "runs_leases",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("runs_status_created", "status", "created_at"),
        Index(  # delayed runs not yet published, by due time: the due-run loop's reads
            "runs_delayed",
            "next_publish_at",
            postgresql_where=text(DELAYED_UNPUBLISHED),
            sqlite_where=text(DELAYED_UNPUBLISHED),
        ),
        Index(
            "runs_user_inflight",
            "user_id",
            postgresql_where=text("status IN ('pending', 'running')"),
            sqlite_where=text("status IN ('pending', 'running')"),
        ),
    )


class RunEventRow(Base):
    __tablename__ = "run_events"

    event_id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(Timestamp)
    worker: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("run_events_run", "run_id", "event_id"),)


class CheckpointRow(Base):
    """A plain assistant's thread state (context.checkpoint). A graph's lives in LangGraph's
    own tables, written by its official checkpointer (runqueue.langgraph)."""

    __tablename__ = "run_checkpoints"

    checkpoint_id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.thread_id", ondelete="CASCADE"))
    # NULL: copied from another thread (migration 0010), whose runs the copy does not have.
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    values: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        Index("run_checkpoints_thread", "thread_id", "checkpoint_id"),
        Index("run_checkpoints_run", "run_id"),
    )


class GraphWriteRow(Base):
    """One graph checkpoint (task_id NULL) or pending write a run wrote through LangGraph's
    checkpointer, with the pending write it replaced if any: what the rollback strategy
    undoes in LangGraph's tables."""

    __tablename__ = "graph_writes"

    write_id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(Text)
    checkpoint_ns: Mapped[str] = mapped_column(Text)
    checkpoint_id: Mapped[str] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(Text)
    idx: Mapped[int | None] = mapped_column(Integer)
    overwrote: Mapped[bool] = mapped_column(Boolean, server_default=false())
    prev_channel: Mapped[str | None] = mapped_column(Text)
    prev_type: Mapped[str | None] = mapped_column(Text)
    prev_value: Mapped[bytes | None] = mapped_column(LargeBinary)
    prev_task_path: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("graph_writes_run", "run_id"),)


# The official LangGraph savers' own tables, in the same database; their setup() makes them.
LANGGRAPH_TABLES = frozenset(
    {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations", "writes"}
)


# The official LangGraph Store's tables (runqueue/store/items.py); its setup() makes them.
LANGGRAPH_STORE_TABLES = frozenset(
    {"store", "store_migrations", "store_vectors", "vector_migrations"}
)


def runqueue_owns(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    """Alembic's include_object: LangGraph's tables are left to its savers' setup()."""
    return not (type_ == "table" and name in LANGGRAPH_TABLES | LANGGRAPH_STORE_TABLES)


class MaintenanceLock(Base):
    """One row per background duty; a worker holds it to be the only one doing it."""

    __tablename__ = "maintenance_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RunStreamRow(Base):
    """The head of a run's stream on the database transport: who may append, how far it got,
    whether it ended. Every append is a guarded UPDATE of this row (the fence)."""

    __tablename__ = "run_streams"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_token: Mapped[str | None] = mapped_column(String(36))  # the attempt that may emit
    owner_attempt: Mapped[int] = mapped_column(Integer, default=0)  # its number; never goes back
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    ended_status: Mapped[str | None] = mapped_column(String(16))  # set once, by `end`
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)  # NULL while not ended

    __table_args__ = (
        Index(
            "run_streams_expiry",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
            sqlite_where=text("expires_at IS NOT NULL"),
        ),
    )


class RunStreamEventRow(Base):
    """One event of a run's stream; `data` is the JSON text as emitted."""

    __tablename__ = "run_stream_events"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)


class WorkerRow(Base):
    """A worker of the fleet, as it recorded itself: registered at start, heartbeated by its
    main process, stopped_at set on a clean shutdown. Live = heartbeat younger than a lease."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # Celery node name
    pool: Mapped[str] = mapped_column(String(32))
    concurrency: Mapped[int] = mapped_column(Integer)
    assistants: Mapped[list[str]] = mapped_column(JSONType)  # the RunTask names it serves
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    heartbeat_at: Mapped[datetime] = mapped_column(Timestamp)
    stopped_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (Index("workers_heartbeat", "heartbeat_at"),)


class Deployment(Base):
    """One row: the id this database gave itself (migration 0009). Broker queues are named
    from it, so deployments sharing a broker never consume each other's runs."""

    __tablename__ = "deployment"

    singleton: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1: one row, ever
    deployment_id: Mapped[str] = mapped_column(String(32))

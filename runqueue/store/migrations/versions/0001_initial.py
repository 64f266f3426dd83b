"""Initial schema: threads, runs, run_events, checkpoints, maintenance_locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _auto_id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _partial(where: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "maintenance_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "threads",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(128)),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("thread_id", sa.String(128), sa.ForeignKey("threads.thread_id"), nullable=False),
        sa.Column("assistant_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("multitask_strategy", sa.String(16)),
        sa.Column("on_disconnect", sa.String(16), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("kwargs", _json(), nullable=False),
        sa.Column("result", _json()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("worker", sa.String(255)),
        sa.Column("follow_up_to_run_id", sa.String(36)),
        sa.Column("abort_action", sa.String(16)),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
        sa.Column("dispatch_state", sa.String(16), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.Column("claim_token", sa.String(36)),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    )
    # The invariant: the database refuses a second running run of one thread.
    op.create_index(
        "runs_one_running_per_thread",
        "runs",
        ["thread_id"],
        unique=True,
        **_partial("status = 'running'"),
    )
    op.create_index("runs_thread_created", "runs", ["thread_id", "created_at", "run_id"])
    op.create_index(
        "runs_inflight",
        "runs",
        ["thread_id", "status"],
        **_partial("status IN ('pending', 'running')"),
    )
    op.create_index(
        "runs_outbox",
        "runs",
        ["dispatched_at"],
        **_partial("status = 'pending' AND dispatch_state = 'queued'"),
    )
    op.create_index("runs_leases", "runs", ["lease_expires_at"], **_partial("status = 'running'"))
    op.create_index("runs_status_created", "runs", ["status", "created_at"])

    op.create_table(
        "run_events",
        sa.Column("event_id", _auto_id(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("run_events_run", "run_events", ["run_id", "event_id"])

    op.create_table(
        "checkpoints",
        sa.Column("checkpoint_id", _auto_id(), primary_key=True, autoincrement=True),
        sa.Column(
            "thread_id",
            sa.String(128),
            sa.ForeignKey("threads.thread_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("values", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("checkpoints_thread", "checkpoints", ["thread_id", "checkpoint_id"])
    op.create_index("checkpoints_run", "checkpoints", ["run_id"])


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("run_events")
    op.drop_table("runs")
    op.drop_table("threads")
    op.drop_table("maintenance_locks")

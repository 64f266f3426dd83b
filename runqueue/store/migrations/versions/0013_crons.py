"""Crons: runs made on a schedule, each tick fired once across the fleet.

- `crons`: one row per cron (POST /runs/crons, POST /threads/{id}/runs/crons): its schedule
  (croniter syntax), timezone, end_time, enabled, the kwargs and metadata of the runs it
  makes, and `next_fire_at`, the tick the schedulers fire next.
- `cron_fires`: one row per cron and tick, its primary key the exactly-once: a scheduler
  inserts it in the transaction that creates the fired run (runqueue/store/crons.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "crons",
        sa.Column("cron_id", sa.String(36), primary_key=True),
        sa.Column("assistant_id", sa.String(200), nullable=False),
        sa.Column(
            "thread_id",
            sa.String(128),
            sa.ForeignKey("threads.thread_id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("end_time", Timestamp, nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("on_run_completed", sa.String(16), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("kwargs", JSONType, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("multitask_strategy", sa.String(16), nullable=True),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("next_fire_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index(
        "crons_due",
        "crons",
        ["next_fire_at"],
        postgresql_where=sa.text("enabled"),
        sqlite_where=sa.text("enabled"),
    )
    op.create_index("crons_user_created", "crons", ["user_id", "created_at"])
    op.create_index("crons_thread", "crons", ["thread_id"])
    op.create_table(
        "cron_fires",
        sa.Column(
            "cron_id",
            sa.String(36),
            sa.ForeignKey("crons.cron_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tick", Timestamp, primary_key=True),
        sa.Column("fired_at", Timestamp, nullable=False),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("thread_deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index("cron_fires_run", "cron_fires", ["run_id"])


def downgrade() -> None:
    op.drop_table("cron_fires")
    op.drop_table("crons")

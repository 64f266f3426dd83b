"""Republish backoff: the relay's next look at a queued run, and how often it was published.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OUTBOX = "status = 'pending' AND dispatch_state = 'queued'"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("next_publish_at", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("publish_count", sa.Integer(), nullable=False, server_default="0")
        )
    # Queued runs from before this revision: the relay looks at them once their old
    # dispatch time is as old as it would have waited before.
    op.execute(
        "UPDATE runs SET next_publish_at = dispatched_at "
        "WHERE status = 'pending' AND dispatch_state = 'queued'"
    )
    op.execute(
        "UPDATE runs SET next_publish_at = created_at "
        "WHERE status = 'pending' AND dispatch_state = 'queued' AND next_publish_at IS NULL"
    )
    op.drop_index("runs_outbox", table_name="runs")
    op.create_index(
        "runs_outbox",
        "runs",
        ["next_publish_at"],
        postgresql_where=sa.text(OUTBOX),
        sqlite_where=sa.text(OUTBOX),
    )


def downgrade() -> None:
    op.drop_index("runs_outbox", table_name="runs")
    op.create_index(
        "runs_outbox",
        "runs",
        ["dispatched_at"],
        postgresql_where=sa.text(OUTBOX),
        sqlite_where=sa.text(OUTBOX),
    )
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("publish_count")
        batch.drop_column("next_publish_at")

"""Poison runs and per-user bounds: how many times a run's delivery or attempt took its worker
down (a bounded count ends the run as `error`), and an index to count a user's runs in flight.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INFLIGHT = "status IN ('pending', 'running')"


def upgrade() -> None:
    op.add_column(
        "runs", sa.Column("worker_losses", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_index(
        "runs_user_inflight",
        "runs",
        ["user_id"],
        postgresql_where=sa.text(INFLIGHT),
        sqlite_where=sa.text(INFLIGHT),
    )


def downgrade() -> None:
    op.drop_index("runs_user_inflight", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("worker_losses")

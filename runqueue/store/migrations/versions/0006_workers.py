"""The fleet's workers: each registers itself at start and heartbeats while it lives.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("pool", sa.String(32), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("assistants", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("workers_heartbeat", "workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("workers_heartbeat", table_name="workers")
    op.drop_table("workers")

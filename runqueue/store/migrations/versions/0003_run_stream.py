"""The run stream's tables, for the database transport (embedded, or a non-Redis broker).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ENDED = "expires_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "run_streams",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("owner_token", sa.String(36)),
        sa.Column("owner_attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("ended_status", sa.String(16)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "run_streams_expiry",
        "run_streams",
        ["expires_at"],
        postgresql_where=sa.text(ENDED),
        sqlite_where=sa.text(ENDED),
    )
    op.create_table(
        "run_stream_events",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_stream_events")
    op.drop_index("run_streams_expiry", table_name="run_streams")
    op.drop_table("run_streams")

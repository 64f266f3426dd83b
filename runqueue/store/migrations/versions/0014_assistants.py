"""Assistants with versions (POST /assistants, PATCH, POST .../latest).

- `assistants`: each assistant made with POST /assistants, with its active version's fields
  and its owner (`user_id`: the API key's user; NULL with auth off). A registered graph's
  default assistant is not stored (runqueue/registry/assistants.py).
- `assistant_versions`: every version as it was written, deleted with its assistant.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")


def _fields() -> list[sa.Column]:
    """The fields an assistant and each of its versions have alike."""
    return [
        sa.Column("graph_id", sa.String(255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("config", JSON_TYPE, nullable=False),
        sa.Column("context", JSON_TYPE, nullable=False),
        sa.Column("metadata", JSON_TYPE, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("assistant_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(128)),
        *_fields(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("assistants_user_created", "assistants", ["user_id", "created_at"])
    op.create_index("assistants_graph", "assistants", ["graph_id"])
    op.create_table(
        "assistant_versions",
        sa.Column(
            "assistant_id",
            sa.String(36),
            sa.ForeignKey("assistants.assistant_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True),
        *_fields(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("assistant_versions")
    op.drop_index("assistants_graph", table_name="assistants")
    op.drop_index("assistants_user_created", table_name="assistants")
    op.drop_table("assistants")

"""Room for LangGraph's checkpointer beside runqueue's tables, and the ledger of its writes.

runqueue's own `checkpoints` table becomes `run_checkpoints`: the official LangGraph savers
(langgraph-checkpoint-postgres and -sqlite) create a table named `checkpoints` in the same
database, and the rollback strategy deletes a run's graph checkpoints in the same transaction
that cancels it. `graph_writes` records which run wrote which graph checkpoint or pending
write (and what that write replaced), so that rollback can undo exactly those.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# PostgreSQL names a table's primary key index and id sequence after the table; LangGraph's
# `checkpoints` would collide with the old names.
RENAMED_INDEXES = (
    ("checkpoints_thread", "run_checkpoints_thread", ["thread_id", "checkpoint_id"]),
    ("checkpoints_run", "run_checkpoints_run", ["run_id"]),
)


def upgrade() -> None:
    op.rename_table("checkpoints", "run_checkpoints")
    if op.get_bind().dialect.name == "postgresql":
        for old, new, _ in RENAMED_INDEXES:
            op.execute(f"ALTER INDEX {old} RENAME TO {new}")
        op.execute("ALTER INDEX checkpoints_pkey RENAME TO run_checkpoints_pkey")
        op.execute(
            "ALTER SEQUENCE IF EXISTS checkpoints_checkpoint_id_seq "
            "RENAME TO run_checkpoints_checkpoint_id_seq"
        )
    else:  # SQLite cannot rename an index
        for old, new, columns in RENAMED_INDEXES:
            op.drop_index(old, table_name="run_checkpoints")
            op.create_index(new, "run_checkpoints", columns)
    op.create_table(
        "graph_writes",
        sa.Column(
            "write_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text()),  # NULL: the run wrote the checkpoint itself
        sa.Column("idx", sa.Integer()),
        # The pending write this one replaced (LangGraph upserts its special channels and
        # re-sends stored writes): rollback puts it back instead of deleting the row.
        sa.Column("overwrote", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("prev_channel", sa.Text()),
        sa.Column("prev_type", sa.Text()),
        sa.Column("prev_value", sa.LargeBinary()),
        sa.Column("prev_task_path", sa.Text()),
    )
    op.create_index("graph_writes_run", "graph_writes", ["run_id"])


def downgrade() -> None:
    """Below 0004 there is no room for LangGraph's savers: their tables (the graphs' thread
    state) go, as every table a downgrade passes does."""
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "writes"):
        if table in existing:
            op.drop_table(table)
    if "checkpoint_migrations" in existing:
        op.drop_table("checkpoint_migrations")
    op.drop_index("graph_writes_run", table_name="graph_writes")
    op.drop_table("graph_writes")
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER SEQUENCE IF EXISTS run_checkpoints_checkpoint_id_seq "
            "RENAME TO checkpoints_checkpoint_id_seq"
        )
        op.execute("ALTER INDEX run_checkpoints_pkey RENAME TO checkpoints_pkey")
        for old, new, _ in RENAMED_INDEXES:
            op.execute(f"ALTER INDEX {new} RENAME TO {old}")
    else:
        for old, new, columns in RENAMED_INDEXES:
            op.drop_index(new, table_name="run_checkpoints")
            op.create_index(old, "run_checkpoints", columns)
    op.rename_table("run_checkpoints", "checkpoints")

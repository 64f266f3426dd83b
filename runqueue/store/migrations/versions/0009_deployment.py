"""The deployment's id: a random name this database gives itself once, from which the broker
queues of its runs are named, so that two deployments sharing a broker (a stale staging
worker, a copied `.env`) never take each other's runs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The database's clock as runqueue writes it (runqueue/store/transactions.py, DB_NOW_SQL).
NOW = {
    "postgresql": "statement_timestamp()",
    "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')",
}


def upgrade() -> None:
    table = op.create_table(
        "deployment",
        # One row, ever: every process of the deployment reads the same id.
        sa.Column("singleton", sa.Integer(), primary_key=True),
        sa.Column("deployment_id", sa.String(32), nullable=False),
        sa.CheckConstraint("singleton = 1", name="deployment_one_row"),
    )
    op.execute(table.insert().values(singleton=1, deployment_id=uuid.uuid4().hex[:12]))
    # Runs queued before this release were published to the one queue no worker reads any
    # more: due for the relay now, which sends each to its assistant's queue (published
    # twice at worst, a run still executes once: the claim is guarded).
    runs = sa.table(
        "runs",
        sa.column("status", sa.String),
        sa.column("dispatch_state", sa.String),
        sa.column("publish_count", sa.Integer),
        sa.column("next_publish_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        runs.update()
        .where(runs.c.status == "pending", runs.c.dispatch_state == "queued")
        .values(next_publish_at=sa.text(NOW[op.get_bind().dialect.name]), publish_count=0)
    )


def downgrade() -> None:
    op.drop_table("deployment")

"""Completion webhooks: a run's webhook URL, the outbox of deliveries, and the trigger that
fills it in the very transaction that writes a run's final status.

- `runs.webhook`: the URL given at create (NULL: none).
- `webhook_deliveries`: one row per run whose webhook is due, claimed by one worker at a time
  with a lease, until delivered or failed (runqueue/store/webhook_deliveries.py).
- `webhook_attempts`: each POST and its outcome (`runqueue show RUN`).
- The trigger `runs_webhook_outbox` (AFTER UPDATE OF status ON runs, on PostgreSQL and
  SQLite): a run with a webhook moving from pending or running to a final status inserts its
  delivery. A trigger, not a statement in each writer: every final write (the PL/pgSQL
  runqueue_finish_run, the statement paths, a cancel of a pending run, set_status, the
  reaper) records the delivery in its own transaction without being changed, and a future
  writer cannot forget it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
NOW = {
    "postgresql": "statement_timestamp()",
    "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')",
}
WHEN = (
    "NEW.webhook IS NOT NULL AND OLD.status IN ('pending', 'running') "
    "AND NEW.status IN ('success', 'error', 'timeout', 'interrupted')"
)

# runqueue/store/sql/webhooks.sql holds the same text (tests/integration/test_sql_functions.py).
POSTGRESQL_FUNCTION = """
CREATE FUNCTION runqueue_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (run_id, url, state, attempts, created_at, next_attempt_at)
        VALUES (NEW.run_id, NEW.webhook, 'pending', 0, statement_timestamp(),
                statement_timestamp())
        ON CONFLICT (run_id) DO NOTHING;
    RETURN NULL;
END;
$$
"""
POSTGRESQL_TRIGGER = f"""
CREATE TRIGGER runs_webhook_outbox AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN ({WHEN}) EXECUTE FUNCTION runqueue_webhook_outbox()
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER runs_webhook_outbox AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN {WHEN}
BEGIN
    INSERT OR IGNORE INTO webhook_deliveries
        (run_id, url, state, attempts, created_at, next_attempt_at)
        VALUES (NEW.run_id, NEW.webhook, 'pending', 0, {NOW["sqlite"]}, {NOW["sqlite"]});
END
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("webhook", sa.Text()))
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("next_attempt_at", Timestamp),
        sa.Column("give_up_at", Timestamp),
        sa.Column("lease_token", sa.String(36)),
        sa.Column("lease_expires_at", Timestamp),
        sa.Column("worker", sa.String(255)),
        sa.Column("delivered_at", Timestamp),
        sa.Column("last_error", sa.Text()),
    )
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column(
            "run_id",
            sa.String(36),
            sa.ForeignKey("webhook_deliveries.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("duration_ms", sa.Integer()),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    on_runs = " ON runs" if dialect == "postgresql" else ""
    op.execute(f"DROP TRIGGER IF EXISTS runs_webhook_outbox{on_runs}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS runqueue_webhook_outbox()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.execute("ALTER TABLE runs DROP COLUMN webhook")

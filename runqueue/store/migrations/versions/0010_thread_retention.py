"""Threads that expire, copies of threads, and threads that name their graph.

- `threads.ttl_strategy`, `ttl_minutes`: a thread's time to live (POST /threads `ttl`); the
  maintenance pass prunes a thread idle that long (runqueue/store/thread_retention.py), and
  `ttl_swept_at` says when keep_latest last did, so that it waits for new activity.
- `run_checkpoints.run_id` may be NULL: a copy of a thread (POST /threads/{id}/copy) keeps
  its plain checkpoints but has none of its runs.
- PostgreSQL: runqueue_create_run stamps the run's assistant into its thread's metadata
  (`graph_id`, `assistant_id`) when nothing is in flight, as the reference server does, so
  that a thread with no run of its own (a copy) still names the graph its state is read with.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TTL_STRATEGIES = "ttl_strategy IN ('delete', 'keep_latest')"

CREATE_RUN = """
CREATE OR REPLACE FUNCTION runqueue_create_run(
    p_run_id text, p_thread_id text, p_assistant_id text, p_user_id text,
    p_strategy text, p_check_strategy boolean, p_on_disconnect text,
    p_metadata jsonb, p_kwargs jsonb, p_follow_up_to_run_id text,
    p_create_thread boolean, p_own_thread boolean, p_republish_in double precision)
RETURNS TABLE (outcome text, conflict_run_id text, conflict_status text, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    v_owner record;
    v_first record;
    v_busy boolean;
    v_state text;
    v_now timestamptz;
    r runs;
BEGIN
    SELECT t.user_id INTO v_owner FROM threads t
        WHERE t.thread_id = p_thread_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        IF NOT p_create_thread THEN
            RETURN QUERY SELECT 'no_thread', NULL::text, NULL::text, NULL::runs;
            RETURN;
        END IF;
        INSERT INTO threads (thread_id, user_id, metadata, created_at, updated_at)
            VALUES (p_thread_id, p_user_id, '{}'::jsonb, clock_timestamp(), clock_timestamp())
            ON CONFLICT (thread_id) DO NOTHING;
        -- Made now, or by a concurrent create that won the insert: lock it either way.
        SELECT t.user_id INTO v_owner FROM threads t
            WHERE t.thread_id = p_thread_id FOR NO KEY UPDATE;
    END IF;
    IF p_own_thread AND p_user_id IS NOT NULL AND v_owner.user_id IS DISTINCT FROM p_user_id
    THEN
        RETURN QUERY SELECT 'no_thread', NULL::text, NULL::text, NULL::runs;
        RETURN;
    END IF;
    v_now := clock_timestamp();
    SELECT o.run_id, o.status INTO v_first FROM runs o
        WHERE o.thread_id = p_thread_id AND o.status IN ('pending', 'running')
        ORDER BY o.created_at, o.run_id LIMIT 1;
    IF FOUND AND p_check_strategy THEN
        IF p_strategy = 'reject' THEN
            RETURN QUERY SELECT 'conflict', v_first.run_id::text, v_first.status::text,
                NULL::runs;
            RETURN;
        END IF;
        IF p_strategy IN ('interrupt', 'rollback') THEN
            RETURN QUERY SELECT 'cancel_first', NULL::text, NULL::text, NULL::runs;
            RETURN;
        END IF;
    END IF;
    -- Busy: a run is running, or queued to start (newcomers wait behind it).
    v_busy := EXISTS (
        SELECT 1 FROM runs o
        WHERE o.thread_id = p_thread_id AND o.status IN ('pending', 'running')
          AND (o.status = 'running' OR o.dispatch_state = 'queued'));
    v_state := CASE WHEN v_busy THEN 'held' ELSE 'queued' END;
    -- As lock_thread: the upsert of a create that may make the thread touches it; a
    -- create into an existing thread only (if_not_exists=reject) does not.
    IF p_create_thread THEN
        UPDATE threads SET updated_at = v_now WHERE thread_id = p_thread_id;
    END IF;
    -- A thread with nothing in flight names the graph of its newest run, as the reference
    -- server stamps it: what its state is read with once it has no run (a copy of it).
    IF v_first.run_id IS NULL THEN
        UPDATE threads SET metadata = metadata
            || jsonb_build_object('graph_id', p_assistant_id, 'assistant_id', p_assistant_id)
            WHERE thread_id = p_thread_id AND NOT metadata
                @> jsonb_build_object('graph_id', p_assistant_id, 'assistant_id', p_assistant_id);
    END IF;
    INSERT INTO runs (
        run_id, thread_id, assistant_id, user_id, status, multitask_strategy, on_disconnect,
        metadata, kwargs, follow_up_to_run_id, publish_count, attempt, created_at, updated_at,
        dispatch_state, dispatched_at, next_publish_at)
    VALUES (
        p_run_id, p_thread_id, p_assistant_id, p_user_id, 'pending', p_strategy,
        p_on_disconnect, p_metadata, p_kwargs, p_follow_up_to_run_id, 0, 0, v_now, v_now,
        v_state,
        CASE WHEN v_busy THEN NULL ELSE v_now END,
        CASE WHEN v_busy THEN NULL ELSE v_now + make_interval(secs => p_republish_in) END)
    RETURNING * INTO r;
    INSERT INTO run_events (run_id, thread_id, status, at, worker, detail)
        VALUES (p_run_id, p_thread_id, 'pending', v_now, NULL, v_state);
    RETURN QUERY SELECT 'created', NULL::text, NULL::text, r;
END;
$$;
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # ADD COLUMN, not a batch: rebuilding `threads` would cascade
        op.execute(
            "ALTER TABLE threads ADD COLUMN ttl_strategy VARCHAR(16) "
            f"CONSTRAINT threads_ttl_strategy CHECK ({TTL_STRATEGIES})"
        )
    else:
        op.add_column("threads", sa.Column("ttl_strategy", sa.String(16)))
        op.create_check_constraint("threads_ttl_strategy", "threads", TTL_STRATEGIES)
    op.add_column("threads", sa.Column("ttl_minutes", sa.Double()))
    op.add_column("threads", sa.Column("ttl_swept_at", sa.DateTime(timezone=True)))
    op.create_index(
        "threads_ttl",
        "threads",
        ["ttl_minutes"],
        postgresql_where=sa.text("ttl_minutes IS NOT NULL"),
        sqlite_where=sa.text("ttl_minutes IS NOT NULL"),
    )
    # run_checkpoints is no table's parent: rebuilding it (SQLite's batch) cascades nowhere.
    with op.batch_alter_table("run_checkpoints") as batch:
        batch.alter_column("run_id", existing_type=sa.String(36), nullable=True)
    if dialect == "postgresql":
        op.execute(CREATE_RUN)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":  # 0007's create, which stamps nothing
        previous = context.script.get_revision("0007").module.CREATE_RUN
        op.execute(previous.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("DELETE FROM run_checkpoints WHERE run_id IS NULL")  # copies' state goes
    with op.batch_alter_table("run_checkpoints") as batch:
        batch.alter_column("run_id", existing_type=sa.String(36), nullable=False)
    op.drop_index("threads_ttl", table_name="threads")
    if dialect == "postgresql":
        op.drop_constraint("threads_ttl_strategy", "threads", type_="check")
    for column in ("ttl_swept_at", "ttl_minutes", "ttl_strategy"):
        op.execute(f"ALTER TABLE threads DROP COLUMN {column}")

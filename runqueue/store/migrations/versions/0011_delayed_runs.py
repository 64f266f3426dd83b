"""Delayed runs (after_seconds): `runs.due_at`, and the three transition functions again.

- `runs.due_at`: a delayed run starts no earlier (the database's clock). A queued delayed
  run is left unpublished (`dispatched_at` NULL, `next_publish_at` = `due_at`) until the
  due-run loop of a worker claims its publish when due (runqueue/store/due_runs.py,
  runqueue/worker/due_runs.py); index `runs_delayed` serves that loop's reads.
- PostgreSQL: runqueue_create_run takes `p_after_seconds` (a new signature: the old one is
  dropped), runqueue_claim_run refuses a run before its due time (`not_due`), and
  runqueue_finish_run releases a held run that is not due yet unpublished.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DELAYED_UNPUBLISHED = (
    "status = 'pending' AND dispatch_state = 'queued' AND dispatched_at IS NULL "
    "AND due_at IS NOT NULL"
)
OLD_CREATE_SIGNATURE = (
    "runqueue_create_run(text, text, text, text, text, boolean, text, jsonb, jsonb, text, "
    "boolean, boolean, double precision)"
)
NEW_CREATE_SIGNATURE = OLD_CREATE_SIGNATURE[:-1] + ", double precision)"

CREATE_RUN = """
CREATE OR REPLACE FUNCTION runqueue_create_run(
    p_run_id text, p_thread_id text, p_assistant_id text, p_user_id text,
    p_strategy text, p_check_strategy boolean, p_on_disconnect text,
    p_metadata jsonb, p_kwargs jsonb, p_follow_up_to_run_id text,
    p_create_thread boolean, p_own_thread boolean, p_republish_in double precision,
    p_after_seconds double precision)
RETURNS TABLE (outcome text, conflict_run_id text, conflict_status text, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    v_owner record;
    v_first record;
    v_busy boolean;
    v_state text;
    v_now timestamptz;
    v_due timestamptz;
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
    v_due := CASE WHEN p_after_seconds > 0
        THEN v_now + make_interval(secs => p_after_seconds) END;
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
        dispatch_state, dispatched_at, next_publish_at, due_at)
    VALUES (
        p_run_id, p_thread_id, p_assistant_id, p_user_id, 'pending', p_strategy,
        p_on_disconnect, p_metadata, p_kwargs, p_follow_up_to_run_id, 0, 0, v_now, v_now,
        v_state,
        CASE WHEN v_busy OR v_due IS NOT NULL THEN NULL ELSE v_now END,
        CASE WHEN v_busy THEN NULL WHEN v_due IS NOT NULL THEN v_due
             ELSE v_now + make_interval(secs => p_republish_in) END,
        v_due)
    RETURNING * INTO r;
    INSERT INTO run_events (run_id, thread_id, status, at, worker, detail)
        VALUES (p_run_id, p_thread_id, 'pending', v_now, NULL, v_state);
    RETURN QUERY SELECT 'created', NULL::text, NULL::text, r;
END;
$$;
"""

CLAIM_RUN = """
CREATE OR REPLACE FUNCTION runqueue_claim_run(
    p_run_id text, p_worker text, p_token text, p_lease_seconds double precision)
RETURNS TABLE (outcome text, checkpoint_values jsonb, run runs)
LANGUAGE plpgsql AS $$
DECLARE
    r runs;
    v_status text;
    v_dispatch_state text;
    v_due timestamptz;
BEGIN
    UPDATE runs SET
        status = 'running',
        started_at = statement_timestamp(),
        updated_at = statement_timestamp(),
        worker = p_worker,
        claim_token = p_token,
        attempt = runs.attempt + 1,
        lease_expires_at = statement_timestamp() + make_interval(secs => p_lease_seconds)
    WHERE runs.run_id = p_run_id AND runs.status = 'pending'
      AND runs.dispatch_state = 'queued' AND runs.abort_action IS NULL
      AND (runs.due_at IS NULL OR runs.due_at <= statement_timestamp())
      AND NOT EXISTS (
          SELECT 1 FROM runs other_run
          WHERE other_run.thread_id = runs.thread_id AND other_run.status = 'running')
    RETURNING * INTO r;
    IF FOUND THEN
        INSERT INTO run_events (run_id, thread_id, status, at, worker, detail)
            VALUES (p_run_id, r.thread_id, 'running', statement_timestamp(), p_worker, NULL);
        RETURN QUERY SELECT 'claimed',
            (SELECT c.values FROM run_checkpoints c WHERE c.thread_id = r.thread_id
             ORDER BY c.checkpoint_id DESC LIMIT 1),
            r;
        RETURN;
    END IF;
    -- Not claimed: say why, from the same transaction.
    SELECT o.status, o.dispatch_state, o.due_at INTO v_status, v_dispatch_state, v_due
        FROM runs o WHERE o.run_id = p_run_id;
    RETURN QUERY SELECT
        CASE
            WHEN NOT FOUND THEN 'missing'
            WHEN v_status = 'running' THEN 'running'
            WHEN v_status <> 'pending' THEN 'finished'
            WHEN v_dispatch_state = 'held' THEN 'held'
            WHEN v_due > statement_timestamp() THEN 'not_due'
            ELSE 'blocked'
        END,
        NULL::jsonb, NULL::runs;
END;
$$;
"""

FINISH_RUN = """
CREATE OR REPLACE FUNCTION runqueue_finish_run(
    p_run_id text, p_status text, p_token text, p_result jsonb, p_error text,
    p_worker text, p_detail text, p_from_statuses text[], p_claimed_by text,
    p_lease_over boolean, p_republish_in double precision)
RETURNS TABLE (changed boolean, released runs)
LANGUAGE plpgsql AS $$
DECLARE
    v_thread_id text;
    v_now timestamptz;
    v_first record;
    r runs;
BEGIN
    SELECT t.thread_id INTO v_thread_id FROM threads t JOIN runs x ON x.thread_id = t.thread_id
        WHERE x.run_id = p_run_id FOR NO KEY UPDATE OF t;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::runs;
        RETURN;
    END IF;
    v_now := clock_timestamp();
    UPDATE runs SET
        status = p_status,
        ended_at = v_now,
        updated_at = v_now,
        lease_expires_at = NULL,
        result = COALESCE(p_result, runs.result),
        error = COALESCE(p_error, runs.error),
        worker = COALESCE(p_worker, runs.worker)
    WHERE runs.run_id = p_run_id AND runs.status = ANY (p_from_statuses)
      AND (p_token IS NULL OR runs.claim_token = p_token)
      AND (p_claimed_by IS NULL OR runs.worker = p_claimed_by)
      AND (NOT p_lease_over OR runs.lease_expires_at <= v_now);
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::runs;
        RETURN;
    END IF;
    INSERT INTO run_events (run_id, thread_id, status, at, worker, detail)
        VALUES (p_run_id, v_thread_id, p_status, v_now, p_worker, COALESCE(p_detail, p_error));
    -- Release the oldest held run, unless a run still holds the thread.
    IF EXISTS (
        SELECT 1 FROM runs o
        WHERE o.thread_id = v_thread_id AND o.status IN ('pending', 'running')
          AND (o.status = 'running' OR o.dispatch_state = 'queued'))
    THEN
        RETURN QUERY SELECT true, NULL::runs;
        RETURN;
    END IF;
    SELECT o.run_id INTO v_first FROM runs o
        WHERE o.thread_id = v_thread_id AND o.status IN ('pending', 'running')
        ORDER BY o.created_at, o.run_id LIMIT 1;
    IF FOUND THEN
        UPDATE runs SET
            dispatch_state = 'queued',
            dispatched_at = CASE WHEN runs.due_at > v_now THEN NULL ELSE v_now END,
            updated_at = v_now,
            next_publish_at = CASE WHEN runs.due_at > v_now THEN runs.due_at
                ELSE v_now + make_interval(secs => p_republish_in) END,
            publish_count = 0
        WHERE runs.run_id = v_first.run_id AND runs.dispatch_state = 'held'
        RETURNING * INTO r;
    END IF;
    RETURN QUERY SELECT true, r;
END;
$$;
"""


def upgrade() -> None:
    op.add_column("runs", sa.Column("due_at", sa.DateTime(timezone=True)))
    op.create_index(
        "runs_delayed",
        "runs",
        ["next_publish_at"],
        postgresql_where=sa.text(DELAYED_UNPUBLISHED),
        sqlite_where=sa.text(DELAYED_UNPUBLISHED),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {OLD_CREATE_SIGNATURE}")
        for body in (CREATE_RUN, CLAIM_RUN, FINISH_RUN):
            op.execute(body)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {NEW_CREATE_SIGNATURE}")
        create = context.script.get_revision("0010").module.CREATE_RUN
        functions_0007 = context.script.get_revision("0007").module
        for body in (create, functions_0007.CLAIM_RUN, functions_0007.FINISH_RUN):
            op.execute(body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.drop_index("runs_delayed", table_name="runs")
    op.execute("ALTER TABLE runs DROP COLUMN due_at")

-- The webhook outbox's trigger (migration 0012): a run with a webhook that moves from
-- pending or running to a final status gets its delivery row in webhook_deliveries, in the
-- transaction that writes the status, whichever writer it is (runqueue_finish_run, the
-- statement paths, a cancel, set_status, the reaper). SQLite has the same trigger, its body
-- an INSERT OR IGNORE (the migration's SQLITE_TRIGGER). docs/architecture.md, "Completion
-- webhooks: an outbox filled by a trigger"; the worker side: runqueue/store/
-- webhook_deliveries.py and runqueue/worker/webhook_delivery.py.

CREATE FUNCTION runqueue_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (run_id, url, state, attempts, created_at, next_attempt_at)
        VALUES (NEW.run_id, NEW.webhook, 'pending', 0, statement_timestamp(),
                statement_timestamp())
        ON CONFLICT (run_id) DO NOTHING;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS runs_webhook_outbox ON runs;
CREATE TRIGGER runs_webhook_outbox AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN (NEW.webhook IS NOT NULL AND OLD.status IN ('pending', 'running')
                   AND NEW.status IN ('success', 'error', 'timeout', 'interrupted'))
EXECUTE FUNCTION runqueue_webhook_outbox();

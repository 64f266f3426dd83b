"""The maintenance pass's thread sweep: threads whose ttl ran out are pruned with their ttl's
strategy, deleted (with their runs, history, state and streams) or cut to their latest
checkpoint. The store decides expiry by the database's clock and re-checks it under the
thread's lock, so a run created meanwhile saves its thread; one with a run in flight is
never due."""

from __future__ import annotations

import logging

from runqueue.errors import DatabaseUnavailableError, StreamUnavailableError
from runqueue.records import PruneStrategy
from runqueue.runtime import Runtime
from runqueue.store import PruneOutcome

logger = logging.getLogger(__name__)

SWEEP_BATCH = 100  # threads one pass prunes at most; the next pass takes the rest


def sweep_expired_threads(runtime: Runtime, limit: int = SWEEP_BATCH) -> int:
    """Prune up to `limit` expired threads; how many were pruned."""
    store = runtime.store
    swept = 0
    for thread_id in store.expired_threads(limit):
        try:
            pruned = store.sweep_thread(thread_id)
        except DatabaseUnavailableError:
            raise  # the pass ends here; the next one tries again
        except Exception as exc:  # noqa: BLE001 - this thread alone: the rest go on
            logger.warning(
                "thread %s expired; not pruned, set aside until its next activity: %s",
                thread_id,
                exc,
                extra={"thread_id": thread_id, "action": "thread_expiry_failed"},
            )
            _set_aside(runtime, thread_id)
            continue
        if pruned.outcome is PruneOutcome.kept_whole:
            logger.warning(
                "thread %s expired; kept whole: its graph uses a DeltaChannel, whose latest "
                "value needs the older checkpoints",
                thread_id,
                extra={"thread_id": thread_id, "action": "thread_expiry_refused"},
            )
        if pruned.outcome is not PruneOutcome.pruned:
            continue
        swept += 1
        for run_id in pruned.run_ids:
            try:
                runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)
        deleted = pruned.strategy is PruneStrategy.delete
        done = "deleted" if deleted else "cut to its latest checkpoint"
        logger.info(
            "thread %s expired: %s",
            thread_id,
            done,
            extra={"thread_id": thread_id, "action": "thread_expired"},
        )
    return swept


def _set_aside(runtime: Runtime, thread_id: str) -> None:
    """A thread that failed to prune is not due again until it changes: retried at every pass,
    a hundred such threads would fill the batch and no other thread would ever be swept."""
    try:
        runtime.store.set_aside(thread_id)
    except Exception as exc:  # noqa: BLE001 - the database: the next pass tries again
        logger.warning("thread %s not set aside: %s", thread_id, exc)

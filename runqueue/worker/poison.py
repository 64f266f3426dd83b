"""Poison runs: a run whose deliveries or attempts keep taking their worker down is stopped
after Settings.max_worker_losses of them and ended as `error`, with the reason, instead of
being handed to the fleet forever (docs/reliability.md, "Poison runs").

A loss is counted in the run's row (`worker_losses`) where the worker learns of it:
- a pool child that died before it claimed the run (the main process's WorkerLostError finds
  the run still pending): counted here, and the relay publishes it again below the bound;
- a worker that died while the run held a lease (the reaper finds it expired): counted by the
  reaper's re-queue, which a retry policy asks for; at the bound the reaper ends it instead.
A run that cannot even be handed to a pool process fails at once (task_request.py): that is
no worker's loss, and retrying it cannot help.
"""

from __future__ import annotations

import logging

from runqueue.records import RunRecord
from runqueue.runtime import Runtime

logger = logging.getLogger(__name__)


def dead_letter_reason(cause: str, losses: int) -> str:
    """A poison run's error: what took its worker down last, and that it is not retried."""
    return (
        f"{cause}; dead-lettered: its deliveries and attempts took their worker down "
        f"{losses} times (RUNQUEUE_MAX_WORKER_LOSSES), so it is not handed to the fleet again"
    )


def record_lost_delivery(runtime: Runtime, run_id: str) -> int | None:
    """Count a delivery whose pool child died before the claim; the run's count of worker
    losses, or None if the run is no longer queued and pending (nothing counted)."""
    losses = runtime.store.record_lost_delivery(run_id)
    if losses is not None and losses < runtime.settings.max_worker_losses:
        logger.warning(
            "run %s: its pool process died before the run started (%d of at most %d worker "
            "losses); the relay publishes it again",
            run_id,
            losses,
            runtime.settings.max_worker_losses,
            extra={"run_id": run_id, "action": "lost_delivery"},
        )
    return losses


def is_poison(runtime: Runtime, losses: int) -> bool:
    """True once a run's worker losses reach the bound: it ends, never retried."""
    return losses >= runtime.settings.max_worker_losses


def reaped_loss_allows_retry(runtime: Runtime, run: RunRecord) -> bool:
    """The reaper found the run's lease expired (its worker lost): may a retry policy's
    re-queue (which counts the loss) still give it another attempt?"""
    return not is_poison(runtime, run.worker_losses + 1)

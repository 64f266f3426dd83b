"""Background duties of the fleet: relay unpublished runs, reap runs whose worker died, delete
expired run streams, prune threads whose ttl ran out.

Every worker runs this loop in its main process, started and stopped with the worker as a
Celery bootstep (MaintenanceStep); the maintenance lock (a row taken with a guarded UPDATE
and an expiry: runqueue/store/maintenance_lock.py) makes sure one worker at a time does the
work. `runqueue reap` runs one pass
for cron or Kubernetes.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps

from runqueue.celery.app import runtime_of
from runqueue.celery.dispatch import apply_effects, relay
from runqueue.records import RunRecord, RunStatus
from runqueue.runtime import Runtime
from runqueue.store import RunQueries
from runqueue.worker import poison
from runqueue.worker.due_runs import publish_due
from runqueue.worker.retries import RetryPolicy
from runqueue.worker.thread_sweep import sweep_expired_threads

logger = logging.getLogger(__name__)


def reap(app: Celery, runtime: Runtime) -> int:
    """Mark running runs whose lease expired as error ("worker lost"), or re-queue them when
    their assistant's retry policy allows and they have not taken down their worker
    max_worker_losses times (poison.py); either way their threads are freed."""
    store = runtime.store
    reaped = 0
    for run_id, token in store.expired_leases():
        run = RunQueries(store).get(run_id)
        policy = _retry_policy(app, run) if run is not None else None
        error = "worker lost: lease expired"
        if policy is not None:  # the policy asks for another attempt: only the bound says no
            if not poison.reaped_loss_allows_retry(runtime, run):
                error = poison.dead_letter_reason(error, run.worker_losses + 1)
            elif _requeue_lost(runtime, run, token, policy):
                reaped += 1
                continue
            # Not re-queued (cancelled meanwhile, say): it ends here, as any lost run does.
        changed, effects = store.finish_run(
            run_id,
            RunStatus.error,
            token=token,
            lease_over=True,
            error=error,
            error_type="WorkerLostError",
        )
        apply_effects(app, runtime, effects)
        if changed:
            reaped += 1
            logger.warning(
                "reaped run %s: its worker stopped renewing the lease",
                run_id,
                extra={"run_id": run_id},
            )
    return reaped


def _retry_policy(app: Celery, run: RunRecord) -> RetryPolicy | None:
    """The run's retry policy, if it gives a lost attempt another one."""
    policy = getattr(app.tasks.get(run.assistant_id), "run_retry", None)
    return policy if policy is not None and policy.allows(run.attempt) else None


def _requeue_lost(runtime: Runtime, run: RunRecord, token: str, policy: RetryPolicy) -> bool:
    """Give a lost run another attempt (its policy allows, and it is no poison run); the
    relay publishes it. The re-queue counts the loss (worker_losses)."""
    detail = f"attempt {run.attempt}/{policy.max_attempts} lost its worker (lease expired), retry"
    if not runtime.store.requeue_run(
        run.run_id, token, publish_in=None, detail=detail, lease_over=True
    ):
        return False
    logger.warning(
        "re-queued run %s: its worker stopped renewing the lease",
        run.run_id,
        extra={"run_id": run.run_id, "thread_id": run.thread_id},
    )
    return True


def run_once(app: Celery, runtime: Runtime) -> tuple[int, int]:
    """One maintenance pass: (runs relayed, runs reaped). Streams past their retention are
    deleted too, where the transport does not expire them itself (the database), the
    ledger of graph writes of runs that can no longer be rolled back, delayed runs that
    fell due (due_runs.py: every worker's own loop publishes them promptly; this pass
    serves `runqueue reap`), the rows of workers
    gone for a week, and threads whose ttl ran out (thread_sweep.py)."""
    relayed, reaped = relay(app, runtime) + publish_due(app, runtime), reap(app, runtime)
    runtime.stream.purge_expired()
    runtime.store.purge_graph_writes()
    runtime.store.forget_gone_workers()
    sweep_expired_threads(runtime)
    runtime.store.sweep_expired_items()  # the Store's items whose ttl ran out (store/items.py)
    return relayed, reaped


class MaintenanceLoop(threading.Thread):
    """The loop a worker's main process runs while it lives."""

    def __init__(self, app: Celery, runtime: Runtime, holder: str):
        super().__init__(name="runqueue-maintenance", daemon=True)
        self.app, self.runtime, self.holder = app, runtime, holder
        self.interval = runtime.settings.maintenance_interval
        self.stopped = threading.Event()
        # Made before the pool forks: no import in this thread while a child is forked.
        runtime.store.load_item_store_modules()

    def stop(self) -> None:
        """The pass under way finishes; no further pass starts."""
        self.stopped.set()

    def run(self) -> None:
        store = self.runtime.store
        while not self.stopped.wait(self.interval):
            try:
                if store.take_maintenance_lock(self.holder, self.interval * 3):
                    run_once(self.app, self.runtime)
            except Exception as exc:  # the database or broker is down: try next time
                logger.warning("maintenance pass failed: %s", exc)


class MaintenanceStep(bootsteps.StartStopStep):
    """The worker's bootstep that runs a MaintenanceLoop from start-up to shutdown."""

    label = "runqueue maintenance"
    # After the pool, so before the consumer: steps stop in reverse order, and the loop then
    # stops right after the consumer, not only once the pool has drained its running runs
    # (without a requirement the step's place in the blueprint changes with the hash seed).
    requires = ("celery.worker.components:Pool",)

    def create(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return MaintenanceLoop(worker.app, runtime_of(worker.app), holder=worker.hostname)

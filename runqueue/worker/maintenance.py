"""Background duties of the fleet: relay unpublished runs, reap runs whose worker died, delete
expired run streams.

Every worker runs this loop in its main process, started and stopped with the worker as a
Celery bootstep (MaintenanceStep); a row in maintenance_locks, taken with a guarded UPDATE
and an expiry, makes sure one worker at a time does the work. `runqueue reap` runs one pass
for cron or Kubernetes.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from runqueue.app import runtime_of
from runqueue.dispatch import apply_effects, relay
from runqueue.records import RunStatus
from runqueue.store.decisions import RunStore
from runqueue.store.models import MaintenanceLock
from runqueue.store.queries import RunQueries
from runqueue.store.transactions import db_now, db_now_plus

logger = logging.getLogger(__name__)

LOCK_NAME = "maintenance"


def reap(app: Celery) -> int:
    """Mark running runs whose lease expired as error ("worker lost"), or re-queue them when
    their assistant's retry policy allows; either way their threads are freed."""
    store = runtime_of(app).store
    reaped = 0
    for run_id, token in store.expired_leases():
        if _requeue_lost(app, run_id, token):
            reaped += 1
            continue
        changed, effects = store.finish_run(
            run_id,
            RunStatus.error,
            token=token,
            lease_over=True,
            error="worker lost: lease expired",
            error_type="WorkerLostError",
        )
        apply_effects(app, effects)
        if changed:
            reaped += 1
            logger.warning(
                "reaped run %s: its worker stopped renewing the lease",
                run_id,
                extra={"run_id": run_id},
            )
    return reaped


def _requeue_lost(app: Celery, run_id: str, token: str) -> bool:
    """Give a lost run another attempt if its policy allows; the relay publishes it."""
    store = runtime_of(app).store
    run = RunQueries(store).get(run_id)
    task = app.tasks.get(run.assistant_id) if run is not None else None
    policy = getattr(task, "run_retry", None)
    if run is None or policy is None or not policy.allows(run.attempt):
        return False
    detail = f"attempt {run.attempt}/{policy.max_attempts} lost its worker (lease expired), retry"
    if not store.requeue_run(run_id, token, publish_in=None, detail=detail, lease_over=True):
        return False
    logger.warning(
        "re-queued run %s: its worker stopped renewing the lease",
        run_id,
        extra={"run_id": run_id, "thread_id": run.thread_id},
    )
    return True


def run_once(app: Celery) -> tuple[int, int]:
    """One maintenance pass: (runs relayed, runs reaped). Streams past their retention are
    deleted too, where the transport does not expire them itself (the database), and the
    ledger of graph writes of runs that can no longer be rolled back."""
    relayed, reaped = relay(app), reap(app)
    runtime = runtime_of(app)
    runtime.stream.purge_expired()
    runtime.store.purge_graph_writes()
    return relayed, reaped


def acquire(store: RunStore, holder: str, seconds: float) -> bool:
    """Take or renew the maintenance lock for `seconds`; False if another live holder has it.
    Its expiry is written and compared with the database's clock, as leases are."""
    with store.transaction() as conn:
        exists = conn.execute(
            select(MaintenanceLock.name).where(MaintenanceLock.name == LOCK_NAME)
        ).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(MaintenanceLock).values(
                            name=LOCK_NAME,
                            holder=holder,
                            expires_at=db_now_plus(seconds),
                        )
                    )
                return True
            except IntegrityError:
                pass
        taken = conn.execute(
            update(MaintenanceLock)
            .where(
                MaintenanceLock.name == LOCK_NAME,
                or_(MaintenanceLock.holder == holder, MaintenanceLock.expires_at <= db_now()),
            )
            .values(holder=holder, expires_at=db_now_plus(seconds))
        ).rowcount
    return taken == 1


class MaintenanceLoop(threading.Thread):
    """The loop a worker's main process runs while it lives."""

    def __init__(self, app: Celery, holder: str):
        super().__init__(name="runqueue-maintenance", daemon=True)
        self.app, self.holder = app, holder
        self.interval = runtime_of(app).settings.maintenance_interval
        self.stopped = threading.Event()

    def stop(self) -> None:
        """The pass under way finishes; no further pass starts."""
        self.stopped.set()

    def run(self) -> None:
        store = runtime_of(self.app).store
        while not self.stopped.wait(self.interval):
            try:
                if acquire(store, self.holder, self.interval * 3):
                    run_once(self.app)
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
        return MaintenanceLoop(worker.app, holder=worker.hostname)

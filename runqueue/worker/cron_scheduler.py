"""Crons: every worker's scheduler fires their due ticks. Not behind the maintenance lock:
any number of schedulers race, and the database decides (store/cron_fires.py: one fire row
per cron and tick, in the same transaction as the run), so a tick fires exactly once while
any one worker lives, and a scheduler killed mid-fire fired the tick wholly or not at all.
docs/architecture.md, "Crons", says why a scheduler in every worker and not `celery beat`."""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps

from runqueue.celery import task_events
from runqueue.celery.app import runtime_of
from runqueue.celery.dispatch import apply_effects
from runqueue.errors import DatabaseUnavailableError, StreamUnavailableError
from runqueue.records import CronFire
from runqueue.runtime import Runtime

logger = logging.getLogger(__name__)

CRON_BATCH = 100  # due crons one pass looks at; a full batch starts the next pass at once
TICKS_PER_PASS = 60  # ticks of one cron a pass fires at most (a cron late by many seconds)


def fire_due(app: Celery, runtime: Runtime, limit: int = CRON_BATCH) -> list[CronFire]:
    """Fire every due tick this scheduler wins (the others are another's); the fires. A
    cron late by several ticks (within the misfire grace) fires them one after another."""
    fires: list[CronFire] = []
    for cron_id, thread_id in runtime.store.due_crons(limit):
        for _ in range(TICKS_PER_PASS):
            fire = _fire_one(app, runtime, cron_id, thread_id)
            if fire is None:
                break
            fires.append(fire)
    return fires


def _fire_one(
    app: Celery, runtime: Runtime, cron_id: str, thread_id: str | None
) -> CronFire | None:
    """Fire the cron's due tick, then publish what the transaction decided."""
    settings = runtime.settings
    try:
        fire, run, effects = runtime.store.fire_cron(
            cron_id, thread_id, settings.cron_misfire_grace_seconds
        )
    except DatabaseUnavailableError:
        raise  # the pass ends here; the next one tries again
    except Exception as exc:  # noqa: BLE001 - this cron alone: the rest go on
        logger.warning(
            "cron %s not fired this pass: %s",
            cron_id,
            exc,
            extra={"cron_id": cron_id, "action": "cron_fire_failed"},
        )
        return None
    if fire is None:
        return None
    apply_effects(app, runtime, effects)
    published = {published.run_id for published in effects.publish}
    if run is not None and run.run_id not in published:  # held behind its thread
        task_events.announce_held(app, run, settings.flower_payloads)
    logger.info(
        "cron %s fired its tick %s: %s",
        cron_id,
        fire.tick.isoformat(),
        fire.outcome,
        extra={
            "cron_id": cron_id,
            "run_id": fire.run_id,
            "thread_id": fire.thread_id,
            "action": "cron_fired",
        },
    )
    return fire


def delete_finished_threads(runtime: Runtime, limit: int = CRON_BATCH) -> int:
    """Stateless crons with on_run_completed `delete`: the threads of fired runs that ended
    are deleted, with their runs and streams. How many."""
    store = runtime.store
    deleted = 0
    for cron_id, tick, thread_id in store.finished_fire_threads(limit):
        for run_id in store.delete_fire_thread(cron_id, tick, thread_id):
            try:
                runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)
        deleted += 1
    return deleted


class CronScheduler(threading.Thread):
    """The loop a worker's main process runs while it lives: fire due ticks, then delete the
    threads stateless fires are done with."""

    def __init__(self, app: Celery, runtime: Runtime):
        super().__init__(name="runqueue-crons", daemon=True)
        self.app, self.runtime = app, runtime
        self.interval = runtime.settings.cron_interval
        self.stopped = threading.Event()

    def stop(self) -> None:
        """The pass under way finishes; no further pass starts."""
        self.stopped.set()

    def run(self) -> None:
        wait = self.interval
        while not self.stopped.wait(wait):
            wait = self.interval
            try:
                if len(fire_due(self.app, self.runtime)) >= CRON_BATCH:
                    wait = 0.0
                delete_finished_threads(self.runtime)
            except Exception as exc:  # the database or broker is down: try next time
                logger.warning("cron pass failed: %s", exc, extra={"action": "cron_pass_failed"})


class CronSchedulerStep(bootsteps.StartStopStep):
    """The worker's bootstep that runs a CronScheduler from start-up to shutdown (unless
    RUNQUEUE_CRON_SCHEDULER=off)."""

    label = "runqueue crons"
    requires = ("celery.worker.components:Pool",)

    def include_if(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return runtime_of(worker.app).settings.cron_scheduler == "on"

    def create(self, worker):  # noqa: ANN001, ANN201
        return CronScheduler(worker.app, runtime_of(worker.app))

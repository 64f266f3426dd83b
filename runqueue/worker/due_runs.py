"""Delayed runs published when due: a loop in every worker's main process.

A delayed run (after_seconds) is durable from its creation, queued unpublished until its
due time; no Celery ETA or countdown message is involved (on Redis an ETA message waits,
unacknowledged, in a worker and is delivered again after the visibility timeout). Each
worker's loop sleeps until the next due time by the database's clock (at most
`due_poll_interval`, so that a new run due sooner is seen), then claims the publish of
the runs that fell due (RunStore.claim_due_publishes: a guarded UPDATE, one winner per
run across the fleet) and publishes them. The claim also refuses a run before its due
time, so even a stray early delivery never starts it early.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps

from runqueue.celery.app import runtime_of
from runqueue.celery.dispatch import publish_many
from runqueue.runtime import Runtime

logger = logging.getLogger(__name__)

BATCH = 500  # runs claimed per statement
SHORTEST_WAIT = 0.01  # seconds: a run due now that another worker holds locked (SKIP LOCKED)


def publish_due(app: Celery, runtime: Runtime) -> int:
    """Claim and publish every delayed run that fell due; returns how many were published."""
    published = 0
    while True:
        runs = runtime.store.claim_due_publishes(limit=BATCH)
        if runs:
            published += publish_many(app, runtime, runs)
        if len(runs) < BATCH:
            return published


class DueRunLoop(threading.Thread):
    """The loop a worker's main process runs while it lives."""

    def __init__(self, app: Celery, runtime: Runtime):
        super().__init__(name="runqueue-due-runs", daemon=True)
        self.app, self.runtime = app, runtime
        self.poll = runtime.settings.due_poll_interval
        self.stopped = threading.Event()

    def stop(self) -> None:
        """The pass under way finishes; no further pass starts."""
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                publish_due(self.app, self.runtime)
                due_in = self.runtime.store.next_due_in()
            except Exception as exc:  # the database or broker is down: try next time
                logger.warning("publishing due runs failed: %s", exc)
                due_in = None
            wait = self.poll if due_in is None else min(due_in, self.poll)
            self.stopped.wait(max(wait, SHORTEST_WAIT))


class DueRunStep(bootsteps.StartStopStep):
    """The worker's bootstep that runs a DueRunLoop from start-up to shutdown."""

    label = "runqueue due runs"
    requires = ("celery.worker.components:Pool",)  # as MaintenanceStep: stops before the pool

    def create(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return DueRunLoop(worker.app, runtime_of(worker.app))

"""A worker app whose consumer cannot start: Celery logs an unrecoverable error and stops
(`RUNQUEUE_APP=tests.faults.crash_app:app`), for the worker command's exit code."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from runqueue import create_app
from tests.faults.fault_app import register_fault_assistants


class FailingStep(bootsteps.StartStopStep):
    """Raises where a transport bug would: in the consumer, after the broker connected."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent: Any) -> None:
        raise RuntimeError("a consumer step failed (tests.faults.crash_app)")


app = create_app(name="crash-workers")
register_fault_assistants(app)
app.steps["consumer"].add(FailingStep)

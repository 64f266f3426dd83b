"""The broker queues a worker consumes: those of the assistants it serves.

Runs are published to their assistant's queue (runqueue.celery.routing), so a worker only
ever receives runs it can execute. The names carry the deployment's id, which the database
holds: they are chosen once the database answers (the fleet bootstep, after readiness),
and before the consumer starts (Celery starts its consumer last)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from runqueue.celery.routing import run_queues
from runqueue.errors import plural
from runqueue.runtime import Runtime
from runqueue.worker.task import RunTask

logger = logging.getLogger(__name__)


def served_assistants(app: Celery) -> list[str]:
    """The assistants a worker of this app executes: its RunTask names."""
    return sorted(name for name, task in app.tasks.items() if isinstance(task, RunTask))


def consume_served_queues(worker: Any, runtime: Runtime) -> list[str]:
    """Have `worker` (Celery's WorkController) consume its assistants' queues. A queue named
    with -Q stays consumed, but for the default queue, which no run is sent to any more.
    Returns the queues it now consumes."""
    queues = worker.app.amqp.queues
    before = sorted(queues.consume_from)
    unused = {runtime.settings.queue, worker.app.conf.task_default_queue}
    kept = [name for name in before if name not in unused]
    names = run_queues(runtime, served_assistants(worker.app))
    queues.select([*names, *kept])
    consumed = sorted(queues.consume_from)
    if consumed != before:
        served = plural(len(names), "assistant")
        logger.info("consuming the queues of %s: %s", served, ", ".join(consumed))
    return consumed


@signals.celeryd_after_setup.connect
def _before_the_banner(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Choose the queues before Celery prints its banner, so that the banner lists the ones
    consumed, if the database answers now; the fleet bootstep chooses them (again) once
    readiness has waited for it."""
    runtime = getattr(getattr(instance, "app", None), "runqueue", None)
    if runtime is None:
        return
    try:
        consume_served_queues(instance, runtime)
    except Exception as exc:  # the database is not up yet: readiness waits for it
        logger.info("the queues to consume are chosen once the database answers: %s", exc)

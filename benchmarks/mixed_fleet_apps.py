"""The apps of benchmarks.mixed_fleet: two workers serving disjoint assistants, on runqueue
(`tools`, `drafts`) and on raw Celery with its own routing (`raw_tools`, `raw_drafts`); the
benchmark process creates and sends. Every body stamps its start (benchmarks.tasks.stamp).
Started as `RUNQUEUE_APP=benchmarks.mixed_fleet_apps:<name> runqueue worker`."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from benchmarks.tasks import create_raw_app, stamp
from runqueue import RunContext, Settings, assistant, create_app

ASSISTANTS = ("mixed_tool", "mixed_draft")


def run_body(context: RunContext, path: str) -> None:
    stamp(path, context.run_id, time.time())


def _raw_body(task: Any, path: str) -> None:
    stamp(path, task.request.id, time.time())


def _runqueue(*names: str) -> Celery:
    app = create_app()
    for name in names:
        assistant(app, name)(run_body)
    return app


def raw_queue(settings: Settings, name: str) -> str:
    return f"{settings.queue}-raw.{name}"


def raw_app(settings: Settings, *names: str, consumes: str | None = None) -> Celery:
    """Celery as its docs route tasks: a queue per task (task_routes), each worker started
    on its own (its default queue)."""
    app = create_raw_app(settings)
    app.conf.task_routes = {name: {"queue": raw_queue(settings, name)} for name in ASSISTANTS}
    if consumes:
        app.conf.task_default_queue = raw_queue(settings, consumes)
    for name in names:
        app.task(name=name, bind=True, shared=False)(_raw_body)
    return app


def __getattr__(name: str) -> Celery:  # only the app a process asks for is built
    builders = {
        "tools": lambda: _runqueue("mixed_tool"),
        "drafts": lambda: _runqueue("mixed_draft"),
        "raw_tools": lambda: raw_app(Settings.from_env(), "mixed_tool", consumes="mixed_tool"),
        "raw_drafts": lambda: raw_app(Settings.from_env(), "mixed_draft", consumes="mixed_draft"),
    }
    if name not in builders:
        raise AttributeError(name)
    app = builders[name]()
    globals()[name] = app
    return app

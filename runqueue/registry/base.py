"""What every group of the registry's methods stands on: a Celery app's runtime, and the one
logger."""

from __future__ import annotations

import logging

from celery import Celery

from runqueue.celery.app import load_app, runtime_of
from runqueue.settings import Settings
from runqueue.store import RunQueries

# One logger for the whole package, under the name it had as one module: operators filter on
# `runqueue.registry` (docs/operations.md) and `runqueue submit` catches its warnings by it.
logger = logging.getLogger("runqueue.registry")


def app_for(settings: Settings) -> Celery:
    """The app these settings name: built from their langgraph.json (RUNQUEUE_CONFIG), else
    imported (RUNQUEUE_APP). Every process (worker, API, CLI) resolves it here."""
    if settings.config:
        from runqueue.langgraph.project import project_app

        return project_app(settings)
    return load_app(settings.app)


class RegistryBase:
    """A Celery app's runtime (settings, store, stream) and its reads."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None):
        if app is None:
            settings = settings or Settings.from_env()
            app = app_for(settings)
        self.app = app
        runtime = runtime_of(app)
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = runtime.store
        self.queries = RunQueries(runtime.store)

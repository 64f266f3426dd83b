"""The peers' apps, as a user of each would write them: Celery with task events on, Celery
with the SQLAlchemy database result backend, and a Procrastinate app. Each runs the same
no-op; the worker entry modules (peer_celery_worker, peer_procrastinate_worker) build them
from the environment, the benchmark builds them from its settings."""

from __future__ import annotations

from typing import Any

from celery import Celery

from benchmarks.tasks import create_raw_app
from runqueue import Settings

RESULT_BACKEND_ENV = "RUNQUEUE_BENCH_RESULT_BACKEND"  # the database backend worker's URL
PROCRASTINATE_DSN_ENV = "RUNQUEUE_BENCH_PROCRASTINATE_DSN"
PROCRASTINATE_NOOP = "bench_procrastinate_noop"


def events_app(settings: Settings) -> Celery:
    """The raw baseline plus what Flower needs from a producer: a task-sent event for every
    publish (its worker, the baseline's app, runs with --task-events)."""
    app = create_raw_app(settings)
    app.conf.update(task_send_sent_event=True)
    return app


def database_backend_app(settings: Settings, result_backend: str) -> Celery:
    """The raw baseline with results kept in PostgreSQL by Celery's SQLAlchemy backend, the
    STARTED state tracked too: the usual way to make Celery task outcomes durable."""
    app = create_raw_app(settings)
    app.conf.update(
        result_backend=result_backend,
        task_ignore_result=False,
        task_track_started=True,
        result_expires=None,  # results persist: no cleanup task deletes them
    )
    return app


def noop() -> None:
    """Procrastinate's no-op job."""


def procrastinate_app(conninfo: str, **pool: Any) -> Any:
    """A Procrastinate app on its own database through psycopg; `pool` sizes the producer's
    connection pool. Imported lazily: procrastinate is in the bench extra only."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo, **pool))
    app.task(name=PROCRASTINATE_NOOP)(noop)
    return app

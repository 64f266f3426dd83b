"""The Celery application factory: one place that sets how runqueue uses Celery."""

from __future__ import annotations

import importlib

from celery import Celery

from runqueue import payload_logs
from runqueue.celery import redis_broker
from runqueue.errors import SettingsError
from runqueue.runtime import Runtime
from runqueue.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    name: str = "runqueue",
    include: list[str] | tuple[str, ...] = (),
) -> Celery:
    """A Celery app configured for runqueue: JSON only, late acks, events on."""
    settings = settings or Settings.from_env()
    app = Celery(name, broker=settings.broker_url, include=list(include))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        result_backend=None,  # results live in the runs table
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,  # Flower sees every run
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=4,
        enable_utc=True,
    )
    if settings.is_embedded_broker:
        configure_filesystem_broker(app, settings)
    else:
        # kombu looks for unacked messages to put back every interval x throttle seconds
        # (100 s by default): look every 10 s, or sooner for a short visibility timeout.
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": min(10.0, settings.broker_visibility_timeout),
            "unacked_restore_throttle": 1,
        }
        # kombu's Redis transport, with which a worker survives a Redis restart: for every
        # URL kombu resolves to it (redis, rediss, redis+socket); harmless for the others.
        redis_broker.install()
    payload_logs.hide_payloads(settings.log_payloads != "on")
    app.conf.imports = [entry for entry in imported_modules(settings) if ":" not in entry]
    app.runqueue = Runtime.open(settings)
    register_imports(app, settings)
    return app


def imported_modules(settings: Settings) -> list[str]:
    """Settings.imports as a list of "module" and "module:function" entries."""
    return [entry.strip() for entry in settings.imports.split(",") if entry.strip()]


def register_imports(app: Celery, settings: Settings) -> None:
    """Call each "module:function" of Settings.imports with the app, so that every process
    of the fleet (worker, API, CLI) knows the same assistants. Plain modules are Celery's
    `imports`: loaded by the worker at start and by load_app()."""
    for entry in imported_modules(settings):
        module_name, _, function_name = entry.partition(":")
        if not function_name:
            continue
        try:
            register = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as exc:
            raise SettingsError(f"RUNQUEUE_IMPORTS: cannot load {entry!r}: {exc}") from None
        register(app)


def configure_filesystem_broker(app: Celery, settings: Settings) -> None:
    """kombu's filesystem broker in the data directory. revoke(terminate=True) only works on
    filesystem:// with late acks and a prefetch of one; the control folder gives the
    broadcast (fanout) that revoke needs. The folders are made on first connection
    (runqueue.celery.filesystem_broker)."""
    # kombu's own filesystem transport, but writing each message atomically (see there).
    app.conf.broker_transport = "runqueue.celery.filesystem_broker:Transport"
    app.conf.broker_transport_options = {
        "data_folder_in": str(settings.broker_dir),
        "data_folder_out": str(settings.broker_dir),
        "control_folder": str(settings.control_dir),
        "polling_interval": settings.filesystem_polling_interval,
    }
    # This transport gets Celery's blocking loop, whose timer thread sleeps up to this long
    # (1 s by default) and is joined at every stop.
    app.conf.worker_timer_precision = 0.1


def runtime_of(app: Celery) -> Runtime:
    runtime = getattr(app, "runqueue", None)
    if runtime is None:
        raise SettingsError("this Celery app was not made by runqueue.create_app()")
    return runtime


def load_app(path: str) -> Celery:
    """Import 'package.module:attribute' (or 'package.module', attribute 'app')."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SettingsError(f"cannot import the Celery app {path!r}: {exc}") from None
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, Celery):
        raise SettingsError(f"{path!r} is not a Celery app")
    try:
        app.loader.import_default_modules()
    except ImportError as exc:
        raise SettingsError(f"RUNQUEUE_IMPORTS: {exc}") from None
    return app

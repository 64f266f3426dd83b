"""The Celery app `runqueue flower` gives Flower: the fleet's broker and nothing else.

Flower reads task events and asks workers over the broker; it needs no database, no
assistants and no run store, so its process gets none (no database URL in its environment).

Loading this module also closes Flower's `/metrics` (Prometheus) behind the credentials of
every other page: Flower 2.2 serves it without authentication, and it names the fleet's
hosts, assistants, counts and timings. Flower has no option for it, so its handler gets
tornado's own `authenticated` decorator, as Flower's other pages have it. A Prometheus
scraper sends the basic-auth credentials (its `basic_auth` setting)."""

from __future__ import annotations

from celery import Celery
from flower.views import monitor
from tornado import web

from runqueue.celery.app import configure_filesystem_broker
from runqueue.settings import Settings


def monitor_app(settings: Settings) -> Celery:
    """A bare Celery app on the fleet's broker, reading events as runqueue's workers send
    them (JSON)."""
    app = Celery("runqueue-flower", broker=settings.broker_url, set_as_current=True)
    app.conf.update(
        accept_content=["json"],
        event_serializer="json",
        task_serializer="json",
        result_backend=None,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )
    if settings.is_embedded_broker:
        configure_filesystem_broker(app, settings)
    return app


def protect_metrics() -> None:
    """Flower's `/metrics` asks for the credentials, as `/` and `/api/...` do."""
    if not getattr(monitor.Metrics.get, "runqueue_protected", False):
        monitor.Metrics.get = web.authenticated(monitor.Metrics.get)
        monitor.Metrics.get.runqueue_protected = True


protect_metrics()
app = monitor_app(Settings.from_env())

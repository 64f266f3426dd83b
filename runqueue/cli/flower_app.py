"""The Celery app `runqueue flower` gives Flower: the fleet's broker and nothing else.

Flower reads task events and asks workers over the broker; it needs no database, no
assistants and no run store, so its process gets none (no database URL in its environment)."""

from __future__ import annotations

from celery import Celery

from runqueue.app import configure_filesystem_broker
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


app = monitor_app(Settings.from_env())

"""Is this process's database (reachable, migrated) and broker there? A starting worker waits
for both, within Settings.ready_timeout, before it says ready; `runqueue health` asks once."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery

from runqueue.celery.dispatch import check_broker
from runqueue.errors import (
    BrokerUnavailableError,
    DatabaseUnavailableError,
    NotReadyError,
    SchemaMissingError,
)
from runqueue.settings import Settings
from runqueue.store import require_current_schema

RETRY_SECONDS = 1.0  # between two checks while waiting


def check_services(app: Celery, settings: Settings, broker_timeout: float = 3.0) -> None:
    """The database (reachable, and migrated: runqueue.store.require_current_schema), then
    the broker; the first that fails raises."""
    require_current_schema(settings)
    check_broker(app, timeout=broker_timeout)


def wait_until_ready(
    app: Celery,
    settings: Settings,
    timeout: float,
    *,
    given_up: Callable[[], bool] = lambda: False,
) -> None:
    """Check database and broker until both answer; NotReadyError, naming the last failure,
    once `timeout` seconds have passed (or `given_up()`: the worker is being stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            check_services(app, settings, broker_timeout=max(0.5, min(3.0, remaining)))
            return
        except (DatabaseUnavailableError, SchemaMissingError, BrokerUnavailableError) as exc:
            if time.monotonic() + RETRY_SECONDS > deadline or given_up():
                raise NotReadyError(f"not ready after {timeout:g}s: {exc}") from None
        time.sleep(RETRY_SECONDS)

"""Is this process's database (reachable, migrated) and broker there? A starting worker waits
for both, within Settings.ready_timeout, before it says ready; `runqueue health` asks once."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery

from runqueue.app import runtime_of
from runqueue.dispatch import check_broker
from runqueue.errors import (
    BrokerUnavailableError,
    DatabaseUnavailableError,
    NotReadyError,
    SchemaMissingError,
)
from runqueue.store.database import alembic_config, current_revision

RETRY_SECONDS = 1.0  # between two checks while waiting


def check_database(app: Celery) -> None:
    """DatabaseUnavailableError if the database does not answer; SchemaMissingError if its
    schema is older than this runqueue's latest migration (a worker started before
    `migrate` finished waits for it). A newer schema, one this code does not know, is
    accepted: in a rolling deploy the old workers keep running after the new `migrate`
    (migrations only add, so the old code still reads and writes what it knows)."""
    from alembic.script import ScriptDirectory

    settings = runtime_of(app).settings
    script = ScriptDirectory.from_config(alembic_config(settings))
    head = script.get_current_head()
    current = current_revision(settings)
    known = {revision.revision for revision in script.walk_revisions()}
    if current is not None and current not in known:
        return  # newer than this code
    if current != head:
        raise SchemaMissingError(
            f"database schema at revision {current or 'none'}, not {head}: run `runqueue migrate`"
        )


def check_services(app: Celery, broker_timeout: float = 3.0) -> None:
    """The database, then the broker; the first that fails raises."""
    check_database(app)
    check_broker(app, timeout=broker_timeout)


def wait_until_ready(
    app: Celery, timeout: float, *, given_up: Callable[[], bool] = lambda: False
) -> None:
    """Check database and broker until both answer; NotReadyError, naming the last failure,
    once `timeout` seconds have passed (or `given_up()`: the worker is being stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            check_services(app, broker_timeout=max(0.5, min(3.0, remaining)))
            return
        except (DatabaseUnavailableError, SchemaMissingError, BrokerUnavailableError) as exc:
            if time.monotonic() + RETRY_SECONDS > deadline or given_up():
                raise NotReadyError(f"not ready after {timeout:g}s: {exc}") from None
        time.sleep(RETRY_SECONDS)

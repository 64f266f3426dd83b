"""A worker's writes outlive a database outage: retried with backoff, never dropped silently.

A status write that still fails after `Settings.status_write_timeout` seconds is logged as an
error and raised; the run then stays `running` with a lease nobody renews, so the reaper
records how it ended once the database is back. Every write retried here is a guarded
statement, so a retry after a commit whose reply was lost changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from runqueue.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.1  # seconds before the first retry
MAX_DELAY = 5.0  # the backoff doubles up to this


def persist(
    operation: Callable[[], T],
    *,
    total_seconds: float,
    what: str,
    extra: dict[str, Any] | None = None,
) -> T:
    """Run `operation`, retrying DatabaseUnavailableError with exponential backoff."""
    deadline = time.monotonic() + total_seconds
    delay = FIRST_DELAY
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except DatabaseUnavailableError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error(
                    "%s failed %d times over %.0fs, giving up (the lease reaper will record "
                    "the run's end): %s",
                    what,
                    attempt,
                    total_seconds,
                    exc,
                    extra=extra,
                )
                raise
            wait = min(delay, remaining)
            logger.warning(
                "%s failed (attempt %d), retrying in %.1fs: %s",
                what,
                attempt,
                wait,
                exc,
                extra=extra,
            )
            time.sleep(wait)
            delay = min(delay * 2, MAX_DELAY)

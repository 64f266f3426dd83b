"""A worker's writes outlive a database outage: retried with backoff, never dropped silently.

A status write that still fails after `Settings.status_write_timeout` seconds is logged as an
error and raised; the run then stays `running` with a lease nobody renews, so the reaper
records how it ended once the database is back. Every write retried here is a guarded
statement, so a retry after a commit whose reply was lost changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from runqueue.errors import DatabaseUnavailableError, StreamUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What an outage of the database, or of the stream's Redis, raises: waited out, not dropped.
UNAVAILABLE = (DatabaseUnavailableError, StreamUnavailableError)

FIRST_DELAY = 0.1  # seconds before the first retry
MAX_DELAY = 5.0  # the backoff doubles up to this


def persist(
    operation: Callable[[], T],
    *,
    total_seconds: float,
    what: str,
    extra: dict[str, Any] | None = None,
) -> T:
    """Run `operation`, retrying an unreachable database or stream (UNAVAILABLE) with
    exponential backoff (tenacity) for `total_seconds`: the last attempt comes at that bound,
    never later; then log an error and raise its failure."""
    backoff = tenacity.wait_exponential(multiplier=FIRST_DELAY, max=MAX_DELAY)

    def wait(state: tenacity.RetryCallState) -> float:
        return min(backoff(state), max(total_seconds - state.seconds_since_start, 0.0))

    def log_retry(state: tenacity.RetryCallState) -> None:
        logger.warning(
            "%s failed (attempt %d), retrying in %.1fs: %s",
            what,
            state.attempt_number,
            state.upcoming_sleep,
            state.outcome.exception() if state.outcome else None,
            extra=extra,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(UNAVAILABLE),
        wait=wait,
        stop=tenacity.stop_after_delay(total_seconds),
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        return retrying(operation)
    except UNAVAILABLE as exc:
        logger.error(
            "%s failed %d times over %gs, giving up (the lease reaper will record the run's "
            "end): %s",
            what,
            retrying.statistics.get("attempt_number", 1),
            total_seconds,
            exc,
            extra=extra,
        )
        raise

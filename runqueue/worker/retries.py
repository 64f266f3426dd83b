"""Per-assistant retry policy: how many attempts a run gets and how long it waits between them.

    @assistant(app, run_retry=RetryPolicy(max_attempts=3, backoff=1.0))
    def flaky(context): ...

A retry rides on Celery's own `Task.retry` (same task id, a countdown). Before Celery
re-publishes, the run goes back from running to pending in one guarded UPDATE that only the
attempt's claim token can make, so the next delivery claims it again (attempt + 1) and a
cancel in between stops it for good. A run whose worker died is re-queued by the reaper
the same way, when the policy allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from runqueue.errors import RunCancelledError

NEVER_RETRIED: tuple[type[BaseException], ...] = (
    RunCancelledError,  # a cancel is final
    SoftTimeLimitExceeded,  # a time limit ends the run as `timeout`
    TimeLimitExceeded,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff for one assistant; the default attempts once."""

    max_attempts: int = 1  # attempts in all, the first included
    backoff: float = 1.0  # seconds before the second attempt
    backoff_factor: float = 2.0  # each further wait is this many times longer
    max_backoff: float = 300.0  # no wait is longer than this
    retry_on: tuple[type[BaseException], ...] = (Exception,)  # errors worth another attempt
    retry_worker_lost: bool = True  # a run reaped after its worker died is attempted again

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.backoff_factor < 1:
            raise ValueError("backoff must be >= 0 and backoff_factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        return min(self.backoff * self.backoff_factor ** max(attempt - 1, 0), self.max_backoff)

    def allows(self, attempt: int, error: BaseException | None = None) -> bool:
        """True if attempt `attempt` failing with `error` (None: worker lost) gets another."""
        if attempt >= self.max_attempts:
            return False
        if error is None:
            return self.retry_worker_lost
        return isinstance(error, self.retry_on) and not isinstance(error, NEVER_RETRIED)


NO_RETRY = RetryPolicy()

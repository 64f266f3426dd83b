"""RetryPolicy arithmetic and the backoff of worker writes (no services needed)."""

from __future__ import annotations

import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from runqueue import RetryPolicy
from runqueue.errors import DatabaseUnavailableError, RunCancelledError
from runqueue.worker.durability import persist


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_factor=2.0, max_backoff=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]


def test_allows_only_retryable_errors_below_max_attempts():
    policy = RetryPolicy(max_attempts=2, retry_on=(ValueError,))
    assert policy.allows(1, ValueError("x"))
    assert not policy.allows(2, ValueError("x"))  # the last attempt
    assert not policy.allows(1, KeyError("x"))  # not in retry_on
    assert not RetryPolicy(max_attempts=3).allows(1, RunCancelledError())
    assert not RetryPolicy(max_attempts=3).allows(1, SoftTimeLimitExceeded())
    assert policy.allows(1, None)  # worker lost
    assert not RetryPolicy(max_attempts=2, retry_worker_lost=False).allows(1, None)
    assert not RetryPolicy().allows(1, ValueError("x"))  # the default attempts once


def test_invalid_policy_is_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_persist_retries_an_unavailable_database_until_it_answers():
    calls = []

    def write() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise DatabaseUnavailableError()
        return "written"

    assert persist(write, total_seconds=5, what="test write") == "written"
    assert len(calls) == 3
    assert calls[2] - calls[1] >= calls[1] - calls[0]  # backoff, not a busy loop


def test_persist_gives_up_loudly_after_its_time(caplog):
    def write() -> None:
        raise DatabaseUnavailableError("still down")

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        persist(write, total_seconds=0.5, what="test write")
    assert 0.5 <= time.monotonic() - started < 2
    assert "giving up" in caplog.text


def test_persist_never_waits_past_its_bound():
    calls = []

    def write() -> None:
        calls.append(time.monotonic())
        raise DatabaseUnavailableError("still down")

    with pytest.raises(DatabaseUnavailableError):
        persist(write, total_seconds=2.0, what="test write")
    # Backoff 0.1, 0.2, 0.4, 0.8 s, then the last wait is cut to meet the 2 s bound.
    assert len(calls) == 6
    assert 1.95 <= calls[-1] - calls[0] < 2.3


def test_persist_does_not_hide_other_errors():
    def write() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        persist(write, total_seconds=5, what="test write")

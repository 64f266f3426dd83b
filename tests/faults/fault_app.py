"""The worker app of the fault tests: the example assistants plus ones with a retry policy and
time limits (`RUNQUEUE_APP=tests.faults.fault_app:app`)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any

from celery import Celery

from runqueue import RunContext, assistant, create_app
from runqueue.worker.retries import RetryPolicy
from runqueue.worker.task import RunTask
from workers.assistants import _journal, register_with_journal, steps


def flaky(
    context: RunContext, fail_attempts: int = 1, journal: str | None = None
) -> dict[str, Any]:
    """Fails its first `fail_attempts` attempts, then succeeds."""
    _journal(journal, context, "start", attempt=context.attempt)
    if context.attempt <= fail_attempts:
        _journal(journal, context, "end", attempt=context.attempt)
        raise RuntimeError(f"flaky attempt {context.attempt}")
    _journal(journal, context, "end", attempt=context.attempt)
    return {"attempt": context.attempt}


def sleepy(context: RunContext, seconds: float = 5.0, journal: str | None = None) -> None:
    """Sleeps in one call, never checking for cancellation (for the time limits)."""
    _journal(journal, context, "start")
    try:
        time.sleep(seconds)
    finally:
        _journal(journal, context, "end")


def slow_finally(
    context: RunContext, finally_seconds: float = 2.0, journal: str | None = None
) -> None:
    """Checkpoints in a tight loop until the run is cancelled, then spends `finally_seconds`
    in its finally block (the README promises that finally blocks run)."""
    _journal(journal, context, "start")
    try:
        n = 0
        while True:
            n += 1
            context.checkpoint({"n": n})
            time.sleep(0.02)
    finally:
        _journal(journal, context, "finally")
        time.sleep(finally_seconds)
        _journal(journal, context, "end")


def background_ticks(
    context: RunContext, tick_seconds: float = 0.05, journal: str | None = None
) -> None:
    """Starts a thread that journals a `tick` every `tick_seconds` and never stops by itself,
    then checkpoints until cancelled: only the end of its process stops that thread."""

    def tick() -> None:
        while True:
            _journal(journal, context, "tick")
            time.sleep(tick_seconds)

    threading.Thread(target=tick, daemon=True).start()
    _journal(journal, context, "start")
    while True:
        context.checkpoint({"alive": time.time()})
        time.sleep(tick_seconds)


def crasher(context: RunContext, how: str = "exit", journal: str | None = None) -> None:
    """Takes its process down: `exit` (os._exit, as an extension calling exit() would) or
    `segfault` (a read of address 0, as a crashing C extension). In a prefork pool that is
    the pool child; in a threads or solo pool, the whole worker."""
    _journal(journal, context, "start", attempt=context.attempt)
    if how == "segfault":
        ctypes.string_at(0)
    os._exit(1)


class DiesBeforeClaim(RunTask):
    """A task whose process dies as the run is handed to it, before runqueue's claim: what a
    C extension that crashes at import, or a bug in code that runs first, does."""

    def __call__(self, thread_id: str, **kwargs: Any) -> Any:
        os._exit(1)


def dies_before_claim(context: RunContext) -> None:
    raise AssertionError("never reached: the process dies before the claim")


FLAKY_POLICY = RetryPolicy(max_attempts=3, backoff=0.5)
# More attempts than a poison run gets: Settings.max_worker_losses stops it first.
CRASHER_POLICY = RetryPolicy(max_attempts=10, backoff=0)


def register_fault_assistants(app: Celery) -> None:
    register_with_journal(app)
    assistant(app, name="flaky", run_retry=FLAKY_POLICY)(flaky)
    # `steps` whose attempt is re-queued once if its worker dies (the reaper's retry).
    assistant(app, name="steps_retried", run_retry=RetryPolicy(max_attempts=2, backoff=0))(steps)
    assistant(app, name="soft_limited", soft_time_limit=1)(sleepy)
    assistant(app, name="hard_limited", time_limit=1)(sleepy)
    assistant(app, name="slow_finally")(slow_finally)
    assistant(app, name="background_ticks")(background_ticks)
    assistant(app, name="crasher")(crasher)
    assistant(app, name="crasher_retried", run_retry=CRASHER_POLICY)(crasher)
    app.task(base=DiesBeforeClaim, name="dies_before_claim", shared=False)(dies_before_claim)


app = create_app(name="fault-workers")
register_fault_assistants(app)

"""What each multitask strategy does to the runs already in flight on its thread: the one
table the store decides with, on both paths (the statements of decisions.py, the function
calls of functions.py). runqueue_create_run (store/sql/transitions.sql) makes the same
decision in SQL; docs/architecture.md, "Adding a strategy", lists every place a new
strategy touches."""

from __future__ import annotations

import enum

from runqueue.records import MultitaskStrategy


class OnBusyThread(enum.StrEnum):
    """What a new run does when its thread has runs in flight and its strategy is checked."""

    refuse = "refuse"  # ConflictError naming the oldest run in flight; nothing written
    cancel = "cancel"  # cancel them (the AbortAction of the strategy's name); held until they stop
    wait = "wait"  # inserted held behind them; finish_run releases it, oldest first


ON_BUSY_THREAD: dict[MultitaskStrategy, OnBusyThread] = {
    MultitaskStrategy.reject: OnBusyThread.refuse,
    MultitaskStrategy.interrupt: OnBusyThread.cancel,
    MultitaskStrategy.rollback: OnBusyThread.cancel,
    MultitaskStrategy.enqueue: OnBusyThread.wait,
}

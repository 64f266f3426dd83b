"""Celery task events for what a worker's own events cannot tell Flower.

Celery's worker reports received, started, succeeded and failed. It says nothing for a run
that is held (never published), skipped at claim (`Ignore` sends no event), cancelled before
it started, ended by the reaper, or interrupted (Celery reports a terminate as a revoke,
without saying interrupt or rollback). runqueue sends those events itself, with the run id
as task id, so Flower's task list matches the runs table (docs/operations.md, "Flower").

How Flower merges events decides which one to send (celery/events/state.py, Task.event): an
event whose state ranks below the task's current one only merges its fields (SUCCESS >
FAILURE > custom > REVOKED > STARTED > RECEIVED > REJECTED > PENDING), while RETRY, sent or
replaced, always takes over. So a run parked behind its thread is reported RETRY: its later
delivery moves it on to RECEIVED and STARTED. A final status is reported with the event of
its own state, dated when the run ended, so resending it (a duplicate delivery) leaves it as
it was.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Celery
from celery.utils.saferepr import saferepr

from runqueue.records import RunRecord, RunStatus
from runqueue.store import ClaimOutcome, RunQueries, RunStore

logger = logging.getLogger(__name__)

# A broker that is down must not hold up a status write or create(): one quick retry.
EVENT_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CONNECT_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "timeout": 2}

PAYLOADS_HIDDEN = "(hidden: RUNQUEUE_FLOWER_PAYLOADS=off)"

_worker_hostname: str | None = None  # this worker's node name, set at worker init


def use_worker_hostname(hostname: str) -> None:
    """Events from this process (and its pool children) name this worker, as Celery's do."""
    global _worker_hostname
    _worker_hostname = hostname


def worker_node() -> str | None:
    """This worker's node name (None outside a worker)."""
    return _worker_hostname


def sender_hostname() -> str:
    """The worker's node name; outside a worker (API, `runqueue` commands) a name of its own,
    which Flower lists as an offline worker once it has sent a run's end (send())."""
    return _worker_hostname or f"runqueue@{socket.gethostname()}"


def thread_label(thread_id: str) -> str:
    """The task's args as Flower shows them: the thread, labelled (Settings-independent)."""
    return f"thread={thread_id}"


def kwargs_label(kwargs: dict[str, Any] | None, payloads: str) -> str:
    """The task's kwargs as Flower shows them: hidden unless RUNQUEUE_FLOWER_PAYLOADS=on."""
    if payloads != "on":
        return PAYLOADS_HIDDEN
    return saferepr(kwargs or {}, 1024)


def send(app: Celery, event_type: str, run_id: str, **fields: Any) -> None:
    """Send one task event; a broker that is down costs a warning, not the caller's write."""
    try:
        with app.amqp.producer_pool.acquire(block=True) as producer:
            # Connect as publish() does, failing fast (the dispatcher's own connect waits out
            # broker_connection_timeout, then retries: 6 s per event with the broker down).
            producer.connection.ensure_connection(**CONNECT_RETRY_POLICY)
            with app.events.Dispatcher(
                producer.connection, sender_hostname(), True, producer.channel
            ) as dispatcher:
                dispatcher.send(
                    event_type, uuid=run_id, retry=True, retry_policy=EVENT_RETRY_POLICY, **fields
                )
                if _worker_hostname is None and event_type != "task-sent":
                    # Celery's event state (Flower's) takes any task event but task-sent as
                    # a heartbeat of its sender: without this, Flower listed this process
                    # as an online worker for two minutes (heartbeat_expires).
                    dispatcher.send("worker-offline", retry=True, retry_policy=EVENT_RETRY_POLICY)
    except Exception as exc:  # kombu raises many types for a broker that is down
        logger.warning(
            "could not tell Flower of run %s (%s): %s",
            run_id,
            event_type,
            exc,
            extra={"run_id": run_id, "action": "task_event_failed"},
        )


def announce_held(app: Celery, run: RunRecord, payloads: str) -> None:
    """A held run is not published, so Celery sends no task-sent: send it, so that Flower
    lists the run (PENDING, its thread marked held) from the moment it exists. A delayed
    run (not published before its due time) is listed the same way, marked delayed, with
    its due time as the task's ETA."""
    due = run.due_at.isoformat() if run.due_at is not None else None
    mark = f"delayed until {due}" if due is not None else "held"
    send(
        app,
        "task-sent",
        run.run_id,
        name=run.assistant_id,
        args=f"{thread_label(run.thread_id)} ({mark})",
        kwargs=kwargs_label(run.kwargs, payloads),
        retries=0,
        eta=due,
        expires=None,
        timestamp=run.created_at.timestamp(),
    )


def announce_parked(app: Celery, run_id: str, thread_id: str) -> None:
    """A delivered run found its thread busy and waits, held, to be published again: RETRY,
    the one state its next delivery's events can replace."""
    send(
        app,
        "task-retried",
        run_id,
        exception=f"held: thread {thread_id} has a running run; this run starts after it",
        traceback=None,
    )


def announce_end(
    app: Celery,
    run_id: str,
    status: RunStatus,
    *,
    reason: str | None = None,
    ended_at: float | None = None,
) -> None:
    """Report a final status: success SUCCESS, error and timeout FAILURE, interrupted
    REVOKED, each with the reason (interrupt or rollback) in its exception text."""
    stamp = {} if ended_at is None else {"timestamp": ended_at}
    text = f"{status.value}: {reason}" if reason else status.value
    if status is RunStatus.success:
        # No result field: the worker's own event carries it (or hides it, payloads off).
        send(app, "task-succeeded", run_id, **stamp)
    elif status is RunStatus.interrupted:
        send(
            app,
            "task-revoked",
            run_id,
            exception=text,
            terminated=False,
            signum=None,
            expired=False,
            **stamp,
        )
    elif status.is_final:
        send(app, "task-failed", run_id, exception=text, traceback=None, **stamp)


def end_reason(run: RunRecord) -> str | None:
    """Why a final run ended, in the words the run's history uses."""
    if run.status is RunStatus.interrupted:
        if run.abort_action is None:
            return "revoked"
        when = "cancelled" if run.started_at is not None else "cancelled before start"
        return f"{when} ({run.abort_action.value})"
    return run.error


def announce_record(app: Celery, run: RunRecord) -> None:
    """Report a final run as the database holds it (a late delivery of it was skipped)."""
    ended_at = run.ended_at.timestamp() if run.ended_at is not None else None
    announce_end(app, run.run_id, run.status, reason=end_reason(run), ended_at=ended_at)


def announce_skip(
    app: Celery, store: RunStore, run_id: str, thread_id: str, outcome: ClaimOutcome
) -> None:
    """A delivery the claim refused. Parked behind its thread: RETRY, until its next
    delivery. Already final (cancelled before start, or a late duplicate): its final state,
    dated when it ended, the same event the run's own end sent, so a duplicate leaves the
    run as Flower showed it. Running under another delivery: nothing, that one reports."""
    if outcome in (ClaimOutcome.held, ClaimOutcome.blocked):
        announce_parked(app, run_id, thread_id)
        return
    if outcome is not ClaimOutcome.finished:
        return
    try:
        run = RunQueries(store).get(run_id)
    except Exception as exc:  # a database blip: Flower misses this end, the run does not
        logger.warning("could not read run %s for Flower: %s", run_id, exc)
        return
    if run is not None and run.status.is_final:
        announce_record(app, run)

"""Publish queued runs again as soon as the broker is back from losing its messages.

A Redis restarted without persistence comes back empty: every queued run whose message it
held would wait `republish_after` (30 s by default) before the relay sends it again. To tell
a broker that lost its messages from one that merely dropped a connection (a network blip,
a restart with persistence: nothing to republish), the fleet keeps one canary message in a
queue of its own that nobody consumes: durable and persistent, it is in the broker exactly
as long as the broker keeps its messages.

Each worker looks for it when its consumer connects and again after every reconnection
(BrokerWatchStep, a consumer bootstep: Celery stops it when the connection is lost and
starts it again after each reconnect). Found: nothing was lost. Missing, while this worker
saw it before: the broker lost its messages, so the queued runs published before this
worker lost its connection are made due now (one guarded UPDATE) and the relay publishes
them again on its next pass, oldest first. Then the canary is put back, so the other
workers, reconnecting a moment later, find it and do nothing: one republish per loss, not
one per worker (and a worker that looks at the same moment marks no run the relay has
published since the loss). A worker that never saw the canary (its first connection, or a
fleet's first start) only puts it there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from kombu import Connection, Exchange, Producer, Queue

from runqueue.celery.app import runtime_of
from runqueue.runtime import Runtime

logger = logging.getLogger(__name__)

CANARY_SUFFIX = ".broker-canary"
CHECK_CONNECT_SECONDS = 3.0  # the consumer just connected: the broker should answer at once


def canary_queue(runs_queue: str) -> Queue:
    """The canary's own queue (and exchange), named after the runs queue."""
    name = runs_queue + CANARY_SUFFIX
    exchange = Exchange(name, type="direct", durable=True, auto_delete=False)
    return Queue(name, exchange, routing_key=name, durable=True, auto_delete=False)


def canary_present(connection: Connection, queue: Queue) -> bool:
    """True if the canary's queue holds a message. Declared passively: looking creates
    nothing (on Redis a queue exists only while it holds messages)."""
    channel = connection.channel()
    try:
        _, messages, _ = channel.queue_declare(queue=queue.name, passive=True)
    except connection.channel_errors as exc:
        if _not_found(exc):  # the broker does not have it
            return False
        raise  # any other refusal says nothing of the messages: checked at the next reconnect
    finally:
        try:
            channel.close()
        except connection.connection_errors + connection.channel_errors:
            pass  # AMQP closes a channel after NOT_FOUND itself
    return messages > 0


def _not_found(exc: BaseException) -> bool:
    """AMQP's 404 (amqp.NotFound), or kombu's virtual transports' NOT_FOUND ChannelError."""
    return str(getattr(exc, "code", getattr(exc, "reply_code", ""))) == "404" or (
        "NOT_FOUND" in str(exc)
    )


def put_canary(connection: Connection, queue: Queue) -> None:
    """Put the one canary message: durable queue, persistent message."""
    with connection.channel() as channel:
        Producer(channel).publish(
            {"canary": "runqueue: present while the broker keeps its messages"},
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            delivery_mode="persistent",
            serializer="json",
        )


class BrokerWatch:
    """One worker's memory of the canary, and the check it runs after each connection."""

    def __init__(self, app: Celery, runtime: Runtime):
        self.app, self.runtime = app, runtime
        self.seen = False  # this worker found (or put) the canary since it started
        self.disconnected_at: float | None = None  # monotonic: the consumer lost the broker
        self._lock = threading.Lock()  # one check at a time, even if reconnections pile up

    def check(self) -> int:
        """Look for the canary; if the broker lost it (and so its messages), make the
        published, unclaimed runs due now and put it back. Returns the runs made due."""
        if not self._lock.acquire(blocking=False):
            return 0  # a check is under way: it sees the same broker
        try:
            return self._check()
        finally:
            self._lock.release()

    def _check(self) -> int:
        queue = canary_queue(self.runtime.settings.queue)
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2,
                timeout=CHECK_CONNECT_SECONDS,
            )  # fmt: skip
            if canary_present(connection, queue):
                self.seen = True
                return 0
            marked = 0
            if self.seen:
                # Before the canary goes back: if this fails, the next check still finds
                # the canary missing and tries again.
                lost_seconds_ago = time.monotonic() - (self.disconnected_at or time.monotonic())
                marked = self.runtime.store.republish_after_broker_loss(lost_seconds_ago)
                # INFO when none: another worker noticed the same loss a moment earlier.
                logger.log(
                    logging.WARNING if marked else logging.INFO,
                    "the broker lost its messages (restarted without persistence?): "
                    "%d queued runs will be published again now",
                    marked,
                    extra={"action": "broker_lost_messages", "runs": marked},
                )
            put_canary(connection, queue)
            self.seen = True
            return marked

    def check_in_background(self) -> None:
        """Run check() off the consumer's thread, which must not wait on the database."""
        threading.Thread(
            target=self._logged_check, name="runqueue-broker-watch", daemon=True
        ).start()

    def _logged_check(self) -> None:
        try:
            self.check()
        except Exception as exc:  # broker or database down again: the next reconnect checks
            logger.warning(
                "could not look for the broker's canary: %s",
                exc,
                extra={"action": "broker_watch_failed"},
            )


class BrokerWatchStep(bootsteps.StartStopStep):
    """The consumer's bootstep: Celery starts it once connected, and again after every
    reconnection to the broker."""

    label = "runqueue broker watch"
    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        app = parent.app
        # The embedded broker keeps its messages in files: nothing to watch.
        runtime = runtime_of(app) if getattr(app, "runqueue", None) else None
        watched = runtime is not None and not runtime.settings.is_embedded_broker
        self.watch = BrokerWatch(app, runtime) if watched else None

    def start(self, parent: Any) -> None:
        if self.watch is not None:
            self.watch.check_in_background()

    def stop(self, parent: Any) -> None:
        """The connection was lost (or the worker stops): what was published before now
        may be gone with the broker."""
        if self.watch is not None:
            self.watch.disconnected_at = time.monotonic()

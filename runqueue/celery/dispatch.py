"""Publishing runs to Celery, revoking them, and re-publishing what never left.

The run row is always committed before its message is published, so a crash between the
two leaves a queued run that the relay publishes again; claims are guarded, so a run
published twice still executes once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from celery import Celery
from kombu import Producer

from runqueue.celery import task_events
from runqueue.celery.routing import run_queue
from runqueue.errors import BrokerUnavailableError, first_line
from runqueue.records import RunRecord
from runqueue.runtime import Runtime
from runqueue.settings import redact_url
from runqueue.store import Effects, RunStore

logger = logging.getLogger(__name__)

# A down broker must not hang create(): fail fast, the relay publishes later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
PUBLISH_BATCH = 500  # runs per pipelined round of publish_many (Redis)


def publish(app: Celery, runtime: Runtime, run: RunRecord) -> bool:
    """Send the run's task message (task id = run id). False if the broker refused.
    Flower shows the message's argsrepr and kwargsrepr: the thread, labelled, and the
    kwargs only if Settings.flower_payloads is on.

    On Redis the message and its task-sent event (Flower's) go in one pipelined round trip
    (kombu's `Producer.batch()`), not two. A batch is sent once, without kombu's retry, so
    if it fails (a connection the broker closed since) the message is sent again the plain
    way, with the retry policy: delivered twice at worst, a run still executes once."""
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=3):
            _send(app, runtime, run, producer)
        return True
    except Exception as exc:  # kombu raises many types for a broker that is down
        logger.debug("batched publish of run %s failed, sending it again: %s", run.run_id, exc)
    try:
        _send(app, runtime, run)
    except Exception as exc:
        _left_for_relay(runtime.store, [run], exc)
        return False
    return True


def publish_many(app: Celery, runtime: Runtime, runs: Sequence[RunRecord]) -> int:
    """Publish many runs through one producer, PUBLISH_BATCH runs per broker round trip where
    the transport can (Redis: kombu's `Producer.batch()`, one non-transactional pipeline of
    each message's LPUSH and its task-sent event); elsewhere (the filesystem broker,
    RabbitMQ) one message after the other on that one producer. The messages are publish()'s
    own. Returns how many were sent.

    A failed round is sent once more (a connection the broker closed since its last use);
    a second failure ends the batch: the broker is taken as down (each further attempt
    would wait out its own retry), and the failed round and every run not yet sent are
    marked unpublished for the relay. A round whose pipeline failed may have been delivered
    in part ("uncertain", kombu says): published twice, a run still executes once."""
    runs = list(runs)
    if not runs:
        return 0
    if len(runs) == 1:  # nothing to batch: the single-run path and its message, as before
        return int(publish(app, runtime, runs[0]))
    sent = 0
    retried = False
    while sent < len(runs):
        try:
            sent = _send_rounds(app, runtime, runs, sent)
        except _RoundFailed as failed:
            sent = failed.sent
            if retried:  # twice in a row: the broker is down, the relay takes the rest
                _left_for_relay(runtime.store, runs[sent:], failed.error)
                break
            # Once, as publish() does: a connection the broker closed since its last use
            # fails the first round; kombu reconnects for the next one.
            retried = True
    return sent


class _RoundFailed(Exception):
    def __init__(self, sent: int, error: Exception):
        super().__init__(str(error))
        self.sent, self.error = sent, error


def _send_rounds(app: Celery, runtime: Runtime, runs: list[RunRecord], sent: int) -> int:
    """publish_many's rounds from runs[sent:]; returns how many were sent in all, or raises
    _RoundFailed saying how many had been before the round that failed."""
    try:
        with app.producer_or_acquire() as producer:
            # One message a round where nothing is batched, so that `sent` stays exact.
            size = PUBLISH_BATCH if producer.supports_batch_publish else 1
            while sent < len(runs):
                round_ = runs[sent : sent + size]
                # No flush inside a round (two commands a run), so a round is sent whole or
                # failed whole, and the runs to hand to the relay are known.
                with producer.batch(max_size=2 * len(round_) + 1):
                    for run in round_:
                        _send(app, runtime, run, producer)
                sent += len(round_)
    except Exception as exc:  # kombu raises many types for a broker that is down
        raise _RoundFailed(sent, exc) from exc
    return sent


def _send(app: Celery, runtime: Runtime, run: RunRecord, producer: Producer | None = None) -> None:
    """The run's task message, the one publish() and publish_many() send, on the queue of
    its assistant (runqueue.celery.routing)."""
    settings = runtime.settings
    app.send_task(
        run.assistant_id,
        args=[run.thread_id],
        kwargs=run.kwargs,
        task_id=run.run_id,
        queue=run_queue(runtime, run.assistant_id),
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
        headers={"runqueue_thread_id": run.thread_id, "runqueue_deployment": runtime.deployment_id},
        argsrepr=task_events.thread_label(run.thread_id),
        kwargsrepr=task_events.kwargs_label(run.kwargs, settings.flower_payloads),
        producer=producer,
    )


def _left_for_relay(store: RunStore, runs: Sequence[RunRecord], error: Exception) -> None:
    """Mark runs whose publish failed as unpublished, so that the relay sends them soon.
    One warning for the lot: a batch of thousands is one failure, not thousands."""
    if runs:
        more = f" (and {len(runs) - 1} more runs)" if len(runs) > 1 else ""
        logger.warning(
            "publish failed%s, the relay will retry: %s",
            more,
            error,
            extra={"run_id": runs[0].run_id, "thread_id": runs[0].thread_id},
        )
    for run in runs:
        try:
            store.mark_unpublished(run.run_id)
        except Exception:  # the row keeps its old dispatch time; the relay still finds it
            logger.exception("could not mark run %s unpublished", run.run_id)


def revoke(app: Celery, runs: Iterable[tuple[str, str | None]]) -> None:
    """Ask the worker running each of these runs, (run id, that worker's node name), to
    terminate it. Losing this message is safe: the run's own process also reads the cancel
    from the database at each heartbeat.

    Sent to the run's worker only, not broadcast: a worker without the run looks its state
    up in the result backend, finds none (results live in the runs table) and logs "Failed
    to mark task ... as revoked in backend" (celery.worker.control), once per terminate and
    per other worker. A run without a recorded worker is broadcast."""
    by_worker: dict[str | None, list[str]] = {}
    for run_id, worker in runs:
        by_worker.setdefault(worker, []).append(run_id)
    for worker, ids in by_worker.items():
        try:
            app.control.revoke(
                ids,
                terminate=True,
                signal="SIGTERM",
                destination=[worker] if worker else None,
            )
        except Exception as exc:
            logger.warning("revoke failed for %s: %s", ids, exc)


def end_streams(runtime: Runtime, effects: Effects) -> None:
    """Write `end` to the streams of the runs that reached a final status. A failure here is
    logged, not raised: the status is committed, and the run's next reader writes the missing
    `end` itself (stream/reader.py)."""
    for ending in effects.ended:
        try:
            runtime.stream.end(
                ending.run_id, ending.status, error=ending.error, error_type=ending.error_type
            )
        except Exception as exc:  # Redis or the database is down
            logger.warning(
                "could not end the stream of run %s (%s); its next reader will: %s",
                ending.run_id,
                ending.status.value,
                exc,
                extra={"run_id": ending.run_id, "action": "stream_end_failed"},
            )


def apply_effects(
    app: Celery, runtime: Runtime, effects: Effects, *, announce_ends: bool = True
) -> None:
    """Carry out, after commit, what a transaction decided: the ended runs' streams (and
    their ends to Flower, unless the caller's Celery worker reports them itself), then
    terminations, then publishes."""
    end_streams(runtime, effects)
    if announce_ends:
        for ending in effects.ended:
            task_events.announce_end(app, ending.run_id, ending.status, reason=ending.detail)
    revoke(app, effects.terminate)
    publish_many(app, runtime, effects.publish)


def relay(app: Celery, runtime: Runtime, limit: int = 500) -> int:
    """Publish queued runs that never reached the broker, or were lost there. Returns count."""
    runs = runtime.store.runs_to_publish(limit=limit)
    published = publish_many(app, runtime, runs)
    if runs:
        logger.info("relay published %d of %d waiting runs", published, len(runs))
    return published


def check_broker(app: Celery, timeout: float = 3.0) -> None:
    """BrokerUnavailableError unless the broker answers within `timeout` seconds. create()
    does not need it (the relay publishes later); a person at a terminal wants to know now."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2,
                timeout=timeout,
            )  # fmt: skip
    except Exception as exc:  # kombu, redis and amqp raise many types for a down broker
        url = redact_url(app.conf.broker_url)
        raise BrokerUnavailableError(f"broker unavailable ({url}): {first_line(exc)}") from None

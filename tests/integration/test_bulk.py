"""create_many and publish_many on both backends: each thread's strategy in request order,
nothing written for a refused or invalid request, every run published once (messages as
publish() sends them) and executed by a real worker, a down broker left to the relay."""

from __future__ import annotations

import json
import time
import uuid

import kombu
import pytest
import redis
from sqlalchemy import select

from runqueue import (
    ConflictError,
    InvalidPayloadError,
    InvalidRunIdError,
    RunRecord,
    RunRequest,
    RunStatus,
    UnknownAssistantError,
)
from runqueue.celery import dispatch
from runqueue.celery.dispatch import publish
from runqueue.store.models import Run, RunEventRow
from tests.support import queue_of, queued_message_files, row_counts

pytestmark = pytest.mark.integration


def new_thread() -> str:
    return f"bulk-{uuid.uuid4().hex[:12]}"


def dispatch_states(manager, runs: list[RunRecord]) -> list[str]:  # noqa: ANN001
    """Each run's dispatch state when it was created (queued, or held behind its thread), as
    its first history row recorded it: the live column moves on as soon as a worker runs."""
    states: dict[str, str] = {}
    with manager.store.transaction() as conn:
        for run_id, detail in conn.execute(
            select(RunEventRow.run_id, RunEventRow.detail)
            .where(
                RunEventRow.run_id.in_([run.run_id for run in runs]),
                RunEventRow.status == "pending",
            )
            .order_by(RunEventRow.event_id)
        ):
            states.setdefault(run_id, detail)
    return [states[run.run_id] for run in runs]


def take_messages(manager) -> dict[str, dict]:  # noqa: ANN001
    """Take every task message waiting in the manager's queue of `echo` off the broker: task
    id -> the message as the broker held it, but for kombu's delivery tag (a fresh one per
    send). A task id sent twice is an AssertionError."""
    settings, queue = manager.settings, queue_of(manager, "echo")
    if settings.is_embedded_broker:
        files = queued_message_files(manager, "echo")
        raw = [path.read_text() for path in files]
        for path in files:
            path.unlink()
    else:
        client = redis.Redis.from_url(settings.broker_url)
        raw = client.lrange(queue, 0, -1)
        client.delete(queue)
    messages = [json.loads(text) for text in raw]
    by_id = {}
    for message in messages:
        message["properties"].pop("delivery_tag")
        assert message["headers"]["id"] not in by_id, "a run was sent twice"
        by_id[message["headers"]["id"]] = message
    return by_id


def test_each_threads_strategy_applies_in_request_order_and_runs_in_creation_order(
    manager, worker, journal
):
    fifo, rejecting = new_thread(), new_thread()
    step = {"steps": 1, "delay": 0.05, "journal": str(journal)}
    outcomes = manager.create_many(
        [
            RunRequest(fifo, "steps", kwargs=step, multitask_strategy="enqueue"),
            RunRequest(rejecting, "echo", kwargs={"journal": str(journal)}),
            RunRequest(fifo, "steps", kwargs=step, multitask_strategy="enqueue"),
            RunRequest(rejecting, "echo"),  # reject: the first one is in flight
            RunRequest(fifo, "steps", kwargs=step, multitask_strategy="enqueue"),
            RunRequest(fifo, "steps", kwargs=step, multitask_strategy="enqueue"),
        ]
    )
    assert [type(outcome) for outcome in outcomes] == [
        RunRecord, RunRecord, RunRecord, ConflictError, RunRecord, RunRecord
    ]  # fmt: skip
    assert rejecting in str(outcomes[3])
    enqueued = [outcomes[i] for i in (0, 2, 4, 5)]
    assert dispatch_states(manager, enqueued) == ["queued", "held", "held", "held"]

    for run in [*enqueued, outcomes[1]]:
        assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    starts = [line["run_id"] for line in journal.lines(thread_id=fifo, event="start")]
    assert starts == [run.run_id for run in enqueued]  # first in, first out
    assert journal.overlapping() == 0
    assert journal.count(run_id=outcomes[1].run_id, event="start") == 1


def test_interrupt_ends_a_pending_run_of_the_same_batch_before_it_starts(manager, worker, journal):
    thread_id = new_thread()
    first, second = manager.create_many(
        [
            RunRequest(thread_id, "echo", kwargs={"journal": str(journal)}),
            RunRequest(
                thread_id, "echo", kwargs={"journal": str(journal)}, multitask_strategy="interrupt"
            ),
        ]
    )
    assert manager.join(second.run_id, timeout=30).status is RunStatus.success
    interrupted = manager.get(first.run_id)
    assert interrupted.status is RunStatus.interrupted
    assert [event.detail for event in manager.events(first.run_id)][-1] == (
        "cancelled before start (interrupt)"
    )
    assert journal.count(run_id=first.run_id, event="start") == 0  # it never executed


def test_a_refused_request_writes_nothing(backend):
    """On a queue no worker reads, so that nothing but create_many writes these threads."""
    manager = backend.manager(queue=f"nobody-{uuid.uuid4().hex[:8]}", republish_after=3600)
    busy, unknown, fresh = new_thread(), new_thread(), new_thread()
    manager.create_or_reject(busy, "echo")
    before = row_counts(manager, [busy, unknown, fresh])
    assert before == (1, 1, 1)
    outcomes = manager.create_many(
        [
            RunRequest(busy, "echo"),  # reject on a busy thread
            RunRequest(unknown, "echo", if_not_exists="reject"),  # no such thread
        ]
    )
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "ConflictError",
        "ThreadNotFoundError",
    ]
    assert row_counts(manager, [busy, unknown, fresh]) == before

    outcomes = manager.create_many([RunRequest(busy, "echo"), RunRequest(fresh, "echo")])
    assert isinstance(outcomes[0], ConflictError) and isinstance(outcomes[1], RunRecord)
    assert row_counts(manager, [busy, unknown, fresh]) == (2, 2, 2)  # the second one's only


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (RunRequest(new_thread(), "no-such-assistant"), UnknownAssistantError),
        (RunRequest(new_thread(), "echo", kwargs={"x": float("nan")}), InvalidPayloadError),
        (RunRequest("'; DROP TABLE runs; --", "echo"), InvalidRunIdError),
    ],
)
def test_an_invalid_request_raises_naming_its_index_and_writes_nothing(manager, bad, error):
    good = [RunRequest(new_thread(), "echo"), RunRequest(new_thread(), "echo")]
    threads = [good[0].thread_id, bad.thread_id, good[1].thread_id]
    with pytest.raises(error, match=r"^request 1: ") as raised:
        manager.create_many([good[0], bad, good[1]])
    assert raised.value.index == 1
    assert row_counts(manager, threads) == (0, 0, 0)


def test_publish_many_sends_each_run_once_as_publish_does(backend, monkeypatch):
    """On a queue no worker reads, in rounds of 50: the broker holds exactly one message per
    queued run, and it is the very message publish() sends for that run. (A republish an
    hour away: the module's worker never relays these runs to its own queue.)"""
    monkeypatch.setattr(dispatch, "PUBLISH_BATCH", 50)
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    manager = backend.manager(queue=queue, republish_after=3600)
    held = new_thread()
    requests = [RunRequest(new_thread(), "echo", kwargs={"n": n}) for n in range(120)]
    requests += [RunRequest(held, "echo"), RunRequest(held, "echo", multitask_strategy="enqueue")]
    runs = manager.create_many(requests)
    batched = take_messages(manager)
    assert sorted(batched) == sorted(run.run_id for run in runs[:121])  # not the held one

    for run in runs[:3]:
        assert publish(manager.app, manager.runtime, run)
    assert take_messages(manager) == {run.run_id: batched[run.run_id] for run in runs[:3]}
    assert batched[runs[7].run_id]["headers"]["runqueue_thread_id"] == runs[7].thread_id


def test_publish_many_with_the_broker_down_leaves_every_run_to_the_relay(backend, manager, worker):
    """Created with a republish an hour away, a run is due for the relay only if create_many
    marked it unpublished. The module's worker relays concurrently, so a run is either still
    marked (no publish time) or already sent once by the relay, never left as published."""
    unreachable = backend.manager(broker_url="redis://127.0.0.1:1/0", republish_after=3600)
    started = time.monotonic()
    runs = unreachable.create_many(
        [RunRequest(new_thread(), "echo", kwargs={"late": n}) for n in range(5)]
    )
    assert time.monotonic() - started < 10, "create_many waited on a dead broker per run"
    with manager.store.transaction() as conn:
        rows = conn.execute(
            select(Run.dispatched_at, Run.publish_count).where(
                Run.run_id.in_([run.run_id for run in runs])
            )
        ).all()
    marked = [row.dispatched_at is None or row.publish_count == 1 for row in rows]
    assert marked == [True] * 5, rows  # marked unpublished, each of them
    for n, run in enumerate(runs):  # the worker's relay publishes them on the real broker
        done = manager.join(run.run_id, timeout=30)
        assert done.status is RunStatus.success and done.result["echo"] == {"late": n}


def test_a_failed_batched_publish_is_sent_again_the_plain_way(backend, monkeypatch):
    """publish() sends the message and its task-sent event in one pipelined round; a round
    that fails (a connection the broker closed) is sent again without the batch, so the run
    is published at once, not left to the relay."""
    if backend.settings.is_embedded_broker:
        pytest.skip("the filesystem broker has no batch: each message is sent as it comes")
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    manager = backend.manager(queue=queue, republish_after=3600)
    run = manager.create_many([RunRequest(new_thread(), "echo")])[0]
    take_messages(manager)
    failed: list[int] = []

    class FailingOnce:
        def __init__(self, real):  # noqa: ANN001
            self.real = real

        def __enter__(self):  # noqa: ANN204
            return self.real.__enter__()

        def __exit__(self, *exc_info):  # noqa: ANN002, ANN204
            if failed or exc_info[0] is not None:
                return self.real.__exit__(*exc_info)
            failed.append(1)
            error = ConnectionError("the broker closed this connection")
            self.real.__exit__(ConnectionError, error, None)  # discards, sends nothing
            raise error

    real_batch = kombu.Producer.batch
    monkeypatch.setattr(
        kombu.Producer, "batch", lambda self, **options: FailingOnce(real_batch(self, **options))
    )
    assert publish(manager.app, manager.runtime, run)
    assert failed == [1]
    assert list(take_messages(manager)) == [run.run_id]  # sent, once more
    with manager.store.transaction() as conn:  # and never handed to the relay
        assert conn.execute(select(Run.dispatched_at).where(Run.run_id == run.run_id)).scalar()

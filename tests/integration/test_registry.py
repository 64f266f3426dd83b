"""The registry API on both databases: validation, ownership, the async twin, the invariant."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from runqueue import (
    ConflictError,
    InvalidPayloadError,
    InvalidRunIdError,
    RunManager,
    RunStatus,
    UnknownAssistantError,
    UnsupportedStrategyError,
)
from runqueue.errors import InvalidStatusError
from runqueue.store.models import Run, RunEventRow, Thread


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex[:12]}"


def row_counts(manager) -> tuple[int, int, int]:
    with manager.store.transaction() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(table)).scalar()
            for table in (Run, Thread, RunEventRow)
        )


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"multitask_strategy": "queue-jump"}, UnsupportedStrategyError),
        ({"assistant_id": "no-such-assistant"}, UnknownAssistantError),
        ({"assistant_id": "celery.backend_cleanup"}, UnknownAssistantError),  # not an assistant
        ({"kwargs": {"when": object()}}, InvalidPayloadError),
        ({"kwargs": {"x": math.nan}}, InvalidPayloadError),
        ({"kwargs": ["not", "an", "object"]}, InvalidPayloadError),
        ({"metadata": {"big": "x" * (1024 * 1024)}}, InvalidPayloadError),
        ({"thread_id": "'; DROP TABLE runs; --"}, InvalidRunIdError),
        ({"follow_up_to_run_id": "not-a-uuid"}, InvalidRunIdError),
        ({"on_disconnect": "explode"}, InvalidPayloadError),
    ],
)
def test_bad_input_is_a_typed_error_and_writes_nothing(manager, options, error):
    before = row_counts(manager)
    arguments = {"thread_id": new_thread(), "assistant_id": "echo", **options}
    with pytest.raises(error):
        manager.create_or_reject(
            arguments.pop("thread_id"), arguments.pop("assistant_id"), **arguments
        )
    assert row_counts(manager) == before


def test_reject_conflict_writes_nothing(manager):
    thread_id = new_thread()
    manager.create_or_reject(thread_id, "steps", kwargs={"steps": 100, "delay": 0.05})
    before = row_counts(manager)
    with pytest.raises(ConflictError):
        manager.create_or_reject(thread_id, "echo", multitask_strategy="reject")
    assert row_counts(manager) == before


def test_quotes_and_sql_in_payloads_round_trip(manager):
    payload = {"text": 'Robert\'); DROP TABLE runs;-- "quoted" \\ ünïcode'}
    run = manager.create(new_thread(), "echo", kwargs=payload, metadata=payload)
    stored = manager.get(run.run_id)
    assert stored.kwargs == payload and stored.metadata == payload


def test_owner_sees_only_their_runs(manager):
    thread_id = new_thread()
    alice = manager.create(thread_id, "echo", user_id="alice")
    bob = manager.create(thread_id, "echo", user_id="bob")
    assert manager.get(alice.run_id, user_id="bob") is None
    assert manager.get(alice.run_id, user_id="alice").run_id == alice.run_id
    assert [r.run_id for r in manager.list_by_thread(thread_id, user_id="bob")] == [bob.run_id]
    assert manager.cancel(alice.run_id, user_id="bob") is False
    assert manager.get(alice.run_id).status is RunStatus.pending
    assert manager.cancel(alice.run_id, user_id="alice") is True


def test_list_by_thread_is_newest_first_and_stable_on_equal_timestamps(manager):
    thread_id = new_thread()
    runs = [manager.create(thread_id, "echo") for _ in range(5)]
    with manager.store.transaction() as conn:  # force a tie on created_at
        conn.execute(
            update(Run).where(Run.thread_id == thread_id).values(created_at=runs[0].created_at)
        )
    listed = [r.run_id for r in manager.list_by_thread(thread_id)]
    assert listed == sorted((r.run_id for r in runs), reverse=True)
    assert listed == [r.run_id for r in manager.list_by_thread(thread_id)]
    assert [r.run_id for r in manager.list_by_thread(thread_id, limit=2, offset=1)] == listed[1:3]


def test_set_status_is_guarded_and_final(manager):
    run = manager.create(new_thread(), "echo")
    assert manager.set_status(run.run_id, "error", error="operator said so") is True
    assert manager.set_status(run.run_id, RunStatus.success) is False
    stored = manager.get(run.run_id)
    assert (stored.status, stored.error) == (RunStatus.error, "operator said so")
    with pytest.raises(InvalidStatusError):
        manager.set_status(run.run_id, "exploded")


def test_has_inflight_and_cleanup(manager):
    thread_id = new_thread()
    run = manager.create(thread_id, "echo")
    assert manager.has_inflight(thread_id)
    assert manager.cleanup(run.run_id) is False  # in flight: kept
    manager.cancel(run.run_id)
    assert not manager.has_inflight(thread_id)
    assert manager.cleanup(run.run_id) is True
    assert manager.get(run.run_id) is None


def test_database_refuses_two_running_runs_of_one_thread(manager):
    """The invariant does not depend on our code: the partial unique index enforces it."""
    thread_id = new_thread()
    first, second = manager.create(thread_id, "echo"), manager.create(thread_id, "echo")
    with manager.store.transaction() as conn:
        conn.execute(update(Run).where(Run.run_id == first.run_id).values(status="running"))
    with pytest.raises(IntegrityError), manager.store.transaction() as conn:
        conn.execute(update(Run).where(Run.run_id == second.run_id).values(status="running"))
    with manager.store.transaction() as conn:
        running = conn.execute(
            text("SELECT count(*) FROM runs WHERE thread_id = :t AND status = 'running'"),
            {"t": thread_id},
        ).scalar()
    assert running == 1


def test_async_manager_shares_the_implementation(backend, manager, worker):
    async def scenario() -> tuple:
        runs = RunManager(manager.app)
        thread_id = new_thread()
        run = await runs.create_or_reject(thread_id, "echo", kwargs={"n": 1})
        fetched = await runs.get(run.run_id)
        done = await runs.join(run.run_id, timeout=30)
        listed = await runs.list_by_thread(thread_id)
        inflight = await runs.has_inflight(thread_id)
        return fetched, done, listed, inflight

    fetched, done, listed, inflight = asyncio.run(scenario())
    assert fetched.run_id == done.run_id
    assert done.status is RunStatus.success and done.result["echo"] == {"n": 1}
    assert [r.run_id for r in listed] == [done.run_id]
    assert inflight is False

"""The worker's hand-off of a run to its pool, in-process on SQLite: whatever the hand-off
raises fails that run alone (status `error`, message acked), never the worker's event loop.

The fault suite (tests/faults/test_poison.py) shows it in real prefork workers for kwargs
nested too deep to pickle; here, any other exception of the pool's, and the subclass Celery
makes of the run's Request class, are covered too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TaskRevokedError
from celery.worker.request import create_request_cls
from kombu import Message

from runqueue import RunStatus, Settings, SyncRunManager, create_app
from runqueue.store.database import migrate
from runqueue.worker import signals  # noqa: F401 - connects task_failure, which ends the run
from runqueue.worker.task_request import RunRequest
from workers.assistants import register


class RefusingPool:
    """A pool whose apply_async raises, as a pool that cannot take the job does."""

    def __init__(self, error: BaseException):
        self.error = error
        self.applied = 0

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        self.applied += 1
        raise self.error


@pytest.fixture
def manager(tmp_path: Path) -> SyncRunManager:
    settings = Settings(data_dir=tmp_path / "data")
    migrate(settings)
    app = create_app(settings, name="hand-off")
    register(app)
    return SyncRunManager(app)


def delivery(
    manager: SyncRunManager, kwargs: dict[str, Any], pool: RefusingPool
) -> tuple[Any, Any, list[str]]:
    """A pending run and the request a worker builds for its message, with the subclass of
    RunRequest that Celery makes for a worker's pool; and a list that records the ack."""
    run = manager.create_or_reject("t-hand-off", "echo", kwargs=kwargs)
    task = manager.app.tasks["echo"]
    proto = manager.app.amqp.as_task_v2(run.run_id, "echo", args=[run.thread_id], kwargs=kwargs)
    message = Message(
        body=proto.body,
        headers=proto.headers,
        content_type="application/x-python-serialize",
        content_encoding="binary",
        delivery_info={"exchange": "", "routing_key": "runqueue"},
        properties=proto.properties,
    )
    acked: list[str] = []
    request_class = create_request_cls(RunRequest, task, pool, "worker@test", None)
    request = request_class(
        message,
        on_ack=lambda *_: acked.append(run.run_id),
        app=manager.app,
        task=task,
        decoded=True,
        body=proto.body,
        headers=proto.headers,
    )
    return run, request, acked


def test_celerys_request_subclass_keeps_the_guard(manager):
    _, request, _ = delivery(manager, {"x": 1}, RefusingPool(RuntimeError("unused")))
    assert type(request) is not RunRequest and isinstance(request, RunRequest)
    assert type(request).execute_using_pool.__wrapped__ is not None


@pytest.mark.parametrize(
    "error",
    [RecursionError("maximum recursion depth exceeded while pickling"), MemoryError(), OSError()],
)
def test_a_hand_off_that_raises_fails_the_run_alone(manager, error):
    pool = RefusingPool(error)
    run, request, acked = delivery(manager, {"x": 1}, pool)
    assert request.execute_using_pool(pool) is None  # no exception for the event loop
    assert pool.applied == 1
    ended = manager.get(run.run_id)
    assert ended.status is RunStatus.error
    assert ended.error.startswith("PoolHandOffError: run could not be handed to a pool process")
    assert ended.attempt == 0 and acked == [run.run_id]


def test_kwargs_too_deep_to_pickle_never_reach_the_pool(manager):
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    pool = RefusingPool(AssertionError("the pool must not be asked"))
    run, request, acked = delivery(manager, {"x": 1}, pool)
    request._kwargs = {"x": deep}  # as an older release let it in (create refuses it now)
    assert request.execute_using_pool(pool) is None
    assert pool.applied == 0
    assert "nest 201+ levels deep" in manager.get(run.run_id).error and acked == [run.run_id]


def test_a_revoked_run_is_still_celerys_to_handle(manager):
    pool = RefusingPool(RuntimeError("unused"))
    _, request, _ = delivery(manager, {"x": 1}, pool)
    request.revoked = lambda: True
    with pytest.raises(TaskRevokedError):
        request.execute_using_pool(pool)

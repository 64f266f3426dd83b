"""The async RunManager is the sync one's twin: every public method, the same signatures."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from runqueue import ConflictError, RunManager, RunStatus, Settings, SyncRunManager, create_app
from runqueue.store.database import migrate
from workers.assistants import register_with_journal


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def parameters(function) -> list[tuple[str, object, object]]:  # noqa: ANN001
    """(name, kind, default) of each parameter: what a caller can pass."""
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_async_manager_has_every_public_method_of_the_sync_one():
    assert public_methods(RunManager) == public_methods(SyncRunManager)


@pytest.mark.parametrize("name", sorted(public_methods(SyncRunManager)))
def test_each_twin_takes_the_same_parameters(name):
    sync_method, async_method = getattr(SyncRunManager, name), getattr(RunManager, name)
    assert parameters(async_method) == parameters(sync_method)
    if name == "stream":  # an iterator on one side, an async iterator on the other
        assert inspect.isasyncgenfunction(async_method)
    elif name not in ("assistants", "assistant_name"):  # read the Celery app, no I/O
        assert inspect.iscoroutinefunction(async_method), name


def test_create_refuses_an_option_it_does_not_know(tmp_path):
    manager = SyncRunManager(create_app(Settings(data_dir=tmp_path)))
    with pytest.raises(TypeError, match=r"create\(\) got an unexpected keyword argument 'strateg"):
        manager.create("t1", "anything", strategy="reject")


def test_the_async_twins_take_their_arguments_through(tmp_path):
    """Embedded (SQLite in-process, filesystem broker in tmp_path); no worker is needed."""
    settings = Settings(data_dir=tmp_path)
    migrate(settings)
    app = create_app(settings)
    register_with_journal(app)
    runs = RunManager(app)

    async def scenario() -> None:
        first = await runs.create_or_reject("t1", "echo", kwargs={"x": 1}, metadata={"m": 2})
        second = await runs.create_or_reject("t1", "echo", multitask_strategy="enqueue")
        with pytest.raises(ConflictError):
            await runs.create_or_reject("t1", "echo", multitask_strategy="reject")
        assert (await runs.get(first.run_id)).metadata == {"m": 2}
        listed = await runs.list_by_thread("t1", status="pending", limit=1, offset=1)
        assert [run.run_id for run in listed] == [first.run_id]
        assert await runs.cancel(second.run_id, action="rollback") is True
        assert (await runs.get(second.run_id)).status is RunStatus.interrupted
        # A run cancelled before it started has a stream that ended, and join() returns.
        ended = [(event.event, event.data) async for event in runs.stream(second.run_id)]
        assert ended == [("end", {"status": "interrupted"})]
        assert (await runs.join(second.run_id, timeout=5)).status is RunStatus.interrupted
        assert runs.assistants() == runs.sync.assistants()

    asyncio.run(scenario())

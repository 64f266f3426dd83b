"""The async RunManager is the sync one's twin: every public method, the same signatures."""

from __future__ import annotations

import inspect

import pytest

from runqueue import RunManager, Settings, SyncRunManager, create_app


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
    if name != "assistants":  # reads the Celery app, no I/O
        assert inspect.iscoroutinefunction(async_method), name


def test_create_refuses_an_option_it_does_not_know(tmp_path):
    manager = SyncRunManager(create_app(Settings(data_dir=tmp_path)))
    with pytest.raises(TypeError, match="unexpected keyword argument 'strategy'"):
        manager.create("t1", "anything", strategy="reject")

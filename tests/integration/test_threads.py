"""Threads through the registry, on both backends: created on their own, searched by metadata
and status, owned by their user, deleted with their runs only when nothing is in flight."""

from __future__ import annotations

import uuid

import pytest

from runqueue.errors import ThreadBusyError, ThreadExistsError, ThreadNotFoundError

pytestmark = pytest.mark.integration


def new_id() -> str:
    return str(uuid.uuid4())


def test_create_get_and_if_exists(manager) -> None:  # noqa: ANN001
    tid = new_id()
    created = manager.create_thread(tid, metadata={"team": "a"}, user_id="ann")
    assert created.thread_id == tid and created.metadata == {"team": "a"}
    with pytest.raises(ThreadExistsError):
        manager.create_thread(tid, user_id="ann")
    assert manager.create_thread(tid, if_exists="do_nothing", user_id="ann").thread_id == tid
    with pytest.raises(ThreadExistsError):  # someone else's: never handed over
        manager.create_thread(tid, if_exists="do_nothing", user_id="ben")
    view = manager.get_thread(tid, user_id="ann")
    assert view is not None and view.status.value == "idle"
    assert manager.get_thread(tid, user_id="ben") is None
    assert manager.get_thread("not a thread id!") is None


def test_search_by_metadata_ids_and_status(manager) -> None:  # noqa: ANN001
    user = f"searcher-{uuid.uuid4().hex[:6]}"
    a = manager.create_thread(
        metadata={"kind": "x", "n": 1, "on": True, "tags": ["p"]}, user_id=user
    )
    b = manager.create_thread(metadata={"kind": "x", "n": 2, "on": False}, user_id=user)
    c = manager.create_thread(metadata={"kind": "y", "n": "1"}, user_id=user)

    def found(**filters) -> set[str]:  # noqa: ANN003
        return {v.thread.thread_id for v in manager.search_threads(user_id=user, **filters)}

    assert found() == {a.thread_id, b.thread_id, c.thread_id}
    assert found(metadata={"kind": "x"}) == {a.thread_id, b.thread_id}
    assert found(metadata={"n": 1}) == {a.thread_id}  # 1 is not "1"
    assert found(metadata={"on": True}) == {a.thread_id}
    assert found(metadata={"tags": ["p"]}) == {a.thread_id}
    assert found(metadata={"kind": "x", "n": 2}) == {b.thread_id}
    assert found(ids=[a.thread_id, c.thread_id]) == {a.thread_id, c.thread_id}
    assert found(status="idle") == {a.thread_id, b.thread_id, c.thread_id}
    assert found(status="busy") == set()
    assert len(manager.search_threads(user_id=user, limit=2)) == 2
    assert len(manager.search_threads(user_id=user, limit=2, offset=2)) == 1
    assert found(metadata={"kind": "x"}) & found(ids=[c.thread_id]) == set()
    odd = manager.create_thread(metadata={'we"ird.key': 1.0, "big": 2**70}, user_id=user)
    assert found(metadata={'we"ird.key': 1}) == {odd.thread_id}  # 1 == 1.0, as JSONB
    assert found(metadata={"big": 2**70}) == {odd.thread_id}


def test_runs_make_a_thread_busy_then_error_and_its_owner_alone_may_add_runs(
    manager,
    worker,  # noqa: ANN001
) -> None:
    tid = manager.create_thread(user_id="owner").thread_id
    with pytest.raises(ThreadNotFoundError):
        manager.create_or_reject(tid, "echo", user_id="intruder", own_thread=True)
    with pytest.raises(ThreadNotFoundError):
        manager.create_or_reject(new_id(), "echo", user_id="owner", if_not_exists="reject")
    run = manager.create_or_reject(tid, "steps", user_id="owner", kwargs={"steps": 20})
    assert manager.get_thread(tid).status.value == "busy"
    with pytest.raises(ThreadBusyError):
        manager.delete_thread(tid, user_id="owner")
    manager.cancel(run.run_id)
    manager.join(run.run_id, timeout=30)
    failed = manager.create_or_reject(tid, "fail", user_id="owner")
    manager.join(failed.run_id, timeout=30)
    assert manager.get_thread(tid).status.value == "error"
    with pytest.raises(ThreadNotFoundError):
        manager.delete_thread(tid, user_id="intruder")
    manager.delete_thread(tid, user_id="owner")
    assert manager.get_thread(tid) is None
    assert manager.get(run.run_id) is None and manager.events(failed.run_id) == []


def test_get_and_cancel_take_any_string_like_the_in_memory_registry(manager) -> None:  # noqa: ANN001
    for bad in ("nope", "", "1234", str(uuid.uuid4())):
        assert manager.get(bad) is None
        assert manager.cancel(bad) is False

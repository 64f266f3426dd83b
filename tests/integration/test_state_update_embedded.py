"""update_state and history through the Python API on the embedded backend (SQLite), in
process: no worker, no server. A thread whose metadata names its graph gets its first state
from an update; updates go on from the latest checkpoint or from an older one; a run in
flight (pending: no worker takes it) refuses them with nothing written; the async twins
answer the same."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunManager, RunRequest, SyncRunManager, create_app
from runqueue.errors import (
    CheckpointNotFoundError,
    InvalidPayloadError,
    InvalidStateUpdateError,
    NoThreadGraphError,
    ThreadBusyError,
    ThreadNotFoundError,
)
from runqueue.langgraph import langgraph_assistant
from runqueue.records import CheckpointRef
from tests.support import Backend, make_backend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    backend = make_backend("embedded", Path(tmp_path_factory.mktemp("state-update")))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def manager(embedded: Backend) -> SyncRunManager:
    from tests.api_graphs import agent

    app = create_app(embedded.settings, name="state-update-embedded")
    langgraph_assistant(app, "agent", agent)
    return SyncRunManager(app)


def test_updates_and_history_on_sqlite(manager: SyncRunManager) -> None:
    manager.create_thread("bare")
    with pytest.raises(NoThreadGraphError):
        manager.update_state("bare", {"steps": ["x"]})
    assert manager.history("bare") == [] and manager.state("bare").values is None
    with pytest.raises(ThreadNotFoundError):
        manager.update_state("no-such-thread", {"steps": ["x"]})

    # As the reference stamps a thread: a UUID assistant_id (not registered here), and the
    # graph's name: the first registered one is the thread's graph.
    uuid_named = {"assistant_id": "fe096781-5601-53d2-b2f6-0d3403f7e9ca", "graph_id": "agent"}
    manager.create_thread("stamped", metadata=uuid_named)
    assert manager.update_state("stamped", {"steps": ["a"]}).thread_id == "stamped"
    assert manager.state("stamped").values == {"steps": ["a"]}

    manager.create_thread("t1", metadata={"graph_id": "agent"})
    first = manager.update_state("t1", {"steps": ["one"]}, as_node="work")
    second = manager.update_state("t1", {"steps": ["two"]}, as_node="review")
    assert isinstance(second, CheckpointRef) and second.thread_id == "t1"
    states = manager.history("t1")
    assert [s.checkpoint_id for s in states] == [second.checkpoint_id, first.checkpoint_id]
    assert [s.parent_checkpoint_id for s in states] == [first.checkpoint_id, None]
    assert [s.metadata["source"] for s in states] == ["update", "update"]
    assert states[0].values == {"steps": ["one", "two"]} and states[0].next == ("respond",)
    assert manager.state("t1") == states[0]
    assert manager.state_at("t1", first.checkpoint_id).values == {"steps": ["one"]}
    # A UUID in capitals is the same checkpoint (as a fork reads it).
    assert manager.state_at("t1", first.checkpoint_id.upper()).values == {"steps": ["one"]}
    assert manager.history("t1", limit=1, before=second.checkpoint_id) == states[1:]
    with pytest.raises(CheckpointNotFoundError):
        manager.state_at("t1", "1f000000-0000-6000-8000-000000000000")
    with pytest.raises(InvalidStateUpdateError, match="no-such-node"):
        manager.update_state("t1", {"steps": ["x"]}, as_node="no-such-node")
    with pytest.raises(InvalidPayloadError):
        manager.history("t1", limit=0)
    # `before` a checkpoint the thread does not have: not found (LangGraph compares ids as
    # text, and answered the whole history or none).
    for unknown in ("1f000000-0000-6000-8000-000000000000", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(CheckpointNotFoundError):
            manager.history("t1", before=unknown)
    with pytest.raises(InvalidPayloadError, match="two different checkpoints"):
        manager.update_state(
            "t1",
            {"steps": ["x"]},
            checkpoint={"checkpoint_id": first.checkpoint_id},
            checkpoint_id=second.checkpoint_id,
        )

    # After an older checkpoint: a new head, whose parent is that one.
    third = manager.update_state("t1", {"steps": ["three"]}, checkpoint_id=first.checkpoint_id)
    head = manager.history("t1", limit=1)[0]
    assert head.checkpoint_id == third.checkpoint_id
    assert head.parent_checkpoint_id == first.checkpoint_id
    assert head.values == {"steps": ["one", "three"]}

    # A run in flight (pending: no worker here) refuses the update; nothing is written.
    run = manager.create_or_reject("t1", "agent", kwargs={"input": {}})
    with pytest.raises(ThreadBusyError, match=run.run_id):
        manager.update_state("t1", {"steps": ["busy"]})
    assert manager.history("t1", limit=1)[0].checkpoint_id == third.checkpoint_id
    assert manager.cancel(run.run_id)
    fourth = manager.update_state("t1", {"steps": ["four"]})
    assert manager.history("t1", limit=1)[0].parent_checkpoint_id == third.checkpoint_id

    async def twins() -> None:
        async_manager = RunManager(manager.app)
        assert (await async_manager.history("t1", limit=1))[0].checkpoint_id == (
            fourth.checkpoint_id
        )
        fifth = await async_manager.update_state("t1", {"steps": ["five"]})
        at = await async_manager.state_at("t1", {"checkpoint_id": fifth.checkpoint_id})
        assert at.parent_checkpoint_id == fourth.checkpoint_id

    asyncio.run(twins())


def test_a_library_fork_names_a_checkpoint_of_its_own_thread(manager: SyncRunManager) -> None:
    """The registry looks for a fork's checkpoint when the run is created, for library callers
    as for the HTTP API: another thread's checkpoint is refused, nothing written."""
    manager.create_thread("fork-source", metadata={"graph_id": "agent"})
    source = manager.update_state("fork-source", {"steps": ["one"]}, as_node="work")
    manager.create_thread("fork-other", metadata={"graph_id": "agent"})
    for create in (manager.create, manager.create_or_reject):
        with pytest.raises(CheckpointNotFoundError, match="fork-other"):
            create("fork-other", "agent", kwargs={"checkpoint_id": source.checkpoint_id})
    with pytest.raises(CheckpointNotFoundError):
        manager.create_many(
            [RunRequest("fork-other", "agent", kwargs={"checkpoint_id": source.checkpoint_id})]
        )
    assert manager.list_by_thread("fork-other") == []
    run = manager.create("fork-source", "agent", kwargs={"checkpoint_id": source.checkpoint_id})
    assert run.kwargs == {"checkpoint_id": source.checkpoint_id}
    manager.cancel(run.run_id)

"""A graph thread's state and its history, read with LangGraph's own get_state() and
get_state_history() on the read-only RunCheckpointer, in the reference server's ThreadState
shape: the checkpoint and its parent, the next tasks (a subgraph's state nested in its task
when asked for), the pending interrupts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from runqueue.errors import CheckpointNotFoundError
from runqueue.langgraph.events import checkpoint_ref, jsonable
from runqueue.records import CheckpointRef, ThreadState
from runqueue.store import RunStore

if TYPE_CHECKING:
    from langgraph.pregel import Pregel
    from langgraph.types import StateSnapshot


def graph_config(thread_id: str, checkpoint: CheckpointRef | None = None) -> dict[str, Any]:
    """The LangGraph config that names the thread's checkpoint: the latest of the root graph
    unless `checkpoint` names another (an id, a subgraph's namespace)."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint is not None:
        configurable["checkpoint_ns"] = checkpoint.checkpoint_ns
        if checkpoint.checkpoint_id is not None:
            configurable["checkpoint_id"] = checkpoint.checkpoint_id
        if checkpoint.checkpoint_map:
            configurable["checkpoint_map"] = dict(checkpoint.checkpoint_map)
    return {"configurable": configurable}


def _reader(graph: Pregel, store: RunStore) -> Pregel:
    from runqueue.langgraph.checkpointer import RunCheckpointer

    return graph.copy(update={"checkpointer": RunCheckpointer(store)})


def graph_state(
    graph: Pregel,
    store: RunStore,
    assistant_id: str,
    thread_id: str,
    *,
    checkpoint: CheckpointRef | None = None,
    subgraphs: bool = False,
) -> ThreadState:
    """The thread's latest checkpoint, or the one `checkpoint` names (CheckpointNotFoundError
    if there is none by that id): values None when the thread has none (never written, or
    all rolled back)."""
    config = graph_config(thread_id, checkpoint)
    snapshot = _reader(graph, store).get_state(config, subgraphs=subgraphs)
    if snapshot.metadata is None:  # LangGraph's answer for a checkpoint it did not find
        if "checkpoint_id" in config["configurable"]:
            raise CheckpointNotFoundError(
                f"thread {thread_id} has no checkpoint {config['configurable']['checkpoint_id']}"
            )
        return ThreadState(thread_id=thread_id, values=None, assistant_id=assistant_id)
    return state_of(snapshot, thread_id, assistant_id)


def graph_history(
    graph: Pregel,
    store: RunStore,
    assistant_id: str,
    thread_id: str,
    *,
    limit: int,
    before: str | None = None,
    metadata: dict[str, Any] | None = None,
    checkpoint: CheckpointRef | None = None,
) -> list[ThreadState]:
    """The thread's checkpoints newest first: at most `limit`, older than the checkpoint id
    `before`, whose metadata holds `metadata`, in `checkpoint`'s namespace (or that one
    checkpoint, if it names an id), as get_state_history() lists them."""
    older = {"configurable": {"checkpoint_id": before}} if before is not None else None
    snapshots = _reader(graph, store).get_state_history(
        graph_config(thread_id, checkpoint), filter=metadata or None, before=older, limit=limit
    )
    return [state_of(snapshot, thread_id, assistant_id) for snapshot in snapshots]


def state_of(snapshot: StateSnapshot, thread_id: str, assistant_id: str) -> ThreadState:
    """A StateSnapshot as runqueue's ThreadState record."""
    configurable = (snapshot.config or {}).get("configurable", {})
    parent = (snapshot.parent_config or {}).get("configurable", {})
    return ThreadState(
        thread_id=thread_id,
        values=jsonable(snapshot.values),
        next=tuple(snapshot.next),
        interrupts=tuple(interrupt_json(i) for i in snapshot.interrupts),
        tasks=tuple(_task_json(task) for task in snapshot.tasks),
        checkpoint_id=configurable.get("checkpoint_id"),
        checkpoint_ns=configurable.get("checkpoint_ns") or "",
        parent_checkpoint_id=parent.get("checkpoint_id"),
        metadata=jsonable(snapshot.metadata or {}),
        created_at=_parse_time(snapshot.created_at),
        assistant_id=assistant_id,
    )


def _task_json(task: Any) -> dict[str, Any]:
    """A next task as the reference server shows it: a subgraph's checkpoint config, or with
    `subgraphs`, the subgraph's whole state nested."""
    from langgraph.types import StateSnapshot

    nested = task.state if isinstance(task.state, StateSnapshot) else None
    config = task.state if task.state is not None and nested is None else None
    return {
        "id": task.id,
        "name": task.name,
        "path": jsonable(task.path),
        "error": None if task.error is None else str(task.error),
        "interrupts": [interrupt_json(i) for i in task.interrupts],
        "checkpoint": jsonable(config["configurable"]) if config else None,
        "state": _snapshot_json(nested) if nested is not None else None,
        "result": jsonable(task.result),
    }


def _snapshot_json(snapshot: StateSnapshot) -> dict[str, Any]:
    """A subgraph's state nested in its task, with the fields of the API's ThreadState."""
    return {
        "values": jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [_task_json(task) for task in snapshot.tasks],
        "metadata": jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint_ref(snapshot.config),
        "parent_checkpoint": checkpoint_ref(snapshot.parent_config),
        "interrupts": [interrupt_json(i) for i in snapshot.interrupts],
        "checkpoint_id": (snapshot.config or {}).get("configurable", {}).get("checkpoint_id"),
        "parent_checkpoint_id": (snapshot.parent_config or {})
        .get("configurable", {})
        .get("checkpoint_id"),
    }


def interrupt_json(interrupt: Any) -> dict[str, Any]:
    """A pending interrupt as state reads show it: value and id, and its response_schema
    only when it has one (as the Agent Server's state endpoints do)."""
    out = jsonable(interrupt)
    if out.get("response_schema") is None:
        out.pop("response_schema", None)
    return out


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

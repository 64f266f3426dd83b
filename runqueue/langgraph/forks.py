"""Forks: a graph run that starts from a checkpoint of its thread other than the newest (the
run option `checkpoint_id`), as the reference server runs one. The run's checkpoints branch
from that one, and the thread's head (its newest checkpoint) follows the new branch; the
older branch stays in the thread's history.

The checkpoint is looked for when the run is created (an unknown one is refused, nothing
written) and again when an attempt starts: a rollback may have deleted it since, and a graph
given an unknown checkpoint would silently start from an empty state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runqueue.errors import CheckpointNotFoundError

if TYPE_CHECKING:
    from runqueue.langgraph.checkpointer import RunCheckpointer
    from runqueue.store import RunStore

ROOT_NAMESPACE = ""  # the root graph's checkpoints: the only ones a run forks from


def fork_configurable(thread_id: str, fork_from: str) -> dict[str, str]:
    """The configurable keys that make LangGraph start from `fork_from`."""
    return {"thread_id": thread_id, "checkpoint_ns": ROOT_NAMESPACE, "checkpoint_id": fork_from}


def _missing(thread_id: str, fork_from: str) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        f"checkpoint {fork_from} not found in thread {thread_id}: a run forks from one of its "
        "thread's checkpoints (GET /threads/{thread_id}/state or its history)"
    )


def require_checkpoint(store: RunStore, thread_id: str, fork_from: str) -> None:
    """CheckpointNotFoundError unless the thread has that root checkpoint: checked when a
    fork is created, before anything is written."""
    from runqueue.langgraph.checkpointer import RunCheckpointer

    config = {"configurable": fork_configurable(thread_id, fork_from)}
    if RunCheckpointer(store).get_tuple(config) is None:  # type: ignore[arg-type]
        raise _missing(thread_id, fork_from)


async def arequire_checkpoint(checkpointer: RunCheckpointer, config: dict[str, Any]) -> None:
    """require_checkpoint() when an attempt starts, with the attempt's checkpointer."""
    if await checkpointer.aget_tuple(config) is None:  # type: ignore[arg-type]
        configurable = config["configurable"]
        raise _missing(configurable["thread_id"], configurable["checkpoint_id"])

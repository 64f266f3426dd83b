"""A graph thread's state updated between runs (`POST /threads/{id}/state`): LangGraph's own
update_state() writes the new checkpoint (metadata `source: update`), through the official
saver, inside the one transaction of the store's thread_update(). That transaction holds the
thread lock and found no run of the thread in flight, so the update never lands inside a
run's writes, and it reads the checkpoint it writes after under that same lock, so two
updates never fork the history."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres import PostgresSaver

from runqueue.errors import CheckpointNotFoundError, InvalidStateUpdateError, RunQueueError
from runqueue.langgraph.checkpointer import official_saver, setup_checkpointer
from runqueue.langgraph.thread_history import graph_config
from runqueue.records import CheckpointRef
from runqueue.store import LentConnection, RunStore

if TYPE_CHECKING:
    from langgraph.pregel import Pregel


class _SaverFailed(Exception):
    """The saver's own call failed (the database): raised as it is, never as the graph's
    refusal of the update."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class LentCheckpointer(BaseCheckpointSaver[str]):
    """A checkpointer whose reads and writes all go through one lent connection: the
    transaction of a thread update, which commits them together or not at all."""

    def __init__(self, lent: LentConnection):
        super().__init__()
        self.lent = lent

    def _saver(self) -> BaseCheckpointSaver:
        return official_saver(self.lent, self.serde)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        try:
            return self._saver().get_tuple(config)
        except Exception as error:
            raise _SaverFailed(error) from error

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        try:
            found = list(self._saver().list(config, filter=filter, before=before, limit=limit))
        except Exception as error:
            raise _SaverFailed(error) from error
        return iter(found)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        try:
            return self._saver().put(config, checkpoint, metadata, new_versions)
        except Exception as error:
            raise _SaverFailed(error) from error

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        try:
            self._saver().put_writes(config, writes, task_id, task_path)
        except Exception as error:
            raise _SaverFailed(error) from error

    def get_next_version(self, current: str | None, channel: None) -> str:
        # The versions every runqueue checkpointer writes (RunCheckpointer's).
        return PostgresSaver.get_next_version(self, current, channel)  # type: ignore[arg-type]


def update_graph_state(
    graph: Pregel,
    store: RunStore,
    assistant_id: str,
    thread_id: str,
    values: Any,
    *,
    as_node: str | None = None,
    checkpoint: CheckpointRef | None = None,
    user_id: str | None = None,
) -> CheckpointRef:
    """Write `values` into the thread's state as if `as_node` had returned them (None: as
    LangGraph picks), after its latest checkpoint or the one `checkpoint` names. Returns the
    checkpoint written. ThreadBusyError while a run of the thread is in flight,
    CheckpointNotFoundError, InvalidStateUpdateError: nothing written."""
    unknown = sorted(set(values) - set(graph.channels)) if isinstance(values, dict) else []
    if unknown:  # LangGraph would write an empty update: refused as a run's input is
        keys = sorted(k for k in graph.channels if not k.startswith(("__", "branch:")))
        raise InvalidStateUpdateError(
            f"values.{unknown[0]}: not a key of the graph's state ({', '.join(keys)})"
        )
    setup_checkpointer(store)
    config = graph_config(thread_id, checkpoint)
    config["metadata"] = {"thread_id": thread_id, "assistant_id": assistant_id}
    with store.thread_update(thread_id, user_id) as lent:
        writer = graph.copy(update={"checkpointer": LentCheckpointer(lent)})
        try:
            named = config["configurable"].get("checkpoint_id")
            if named is not None and writer.checkpointer.get_tuple(config) is None:
                raise CheckpointNotFoundError(f"thread {thread_id} has no checkpoint {named}")
            written = writer.update_state(config, values, as_node=as_node)
        except _SaverFailed as failed:  # the database's error, as every store call raises it
            raise failed.error from None
        except RunQueueError:
            raise
        except Exception as error:  # noqa: BLE001 - the graph refused the values: an unknown
            # node, or a reducer given what it cannot take (TypeError, ValueError, ...)
            raise InvalidStateUpdateError(
                f"state update refused by the graph: {type(error).__name__}: {error}"
            ) from None
    configurable = written["configurable"]
    return CheckpointRef(
        thread_id=thread_id,
        checkpoint_id=configurable["checkpoint_id"],
        checkpoint_ns=configurable.get("checkpoint_ns") or "",
    )

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
from langgraph.errors import InvalidUpdateError

from runqueue.errors import CheckpointNotFoundError, InvalidStateUpdateError
from runqueue.langgraph.checkpointer import official_saver, setup_checkpointer
from runqueue.langgraph.thread_history import graph_config
from runqueue.records import CheckpointRef
from runqueue.store import LentConnection, RunStore

if TYPE_CHECKING:
    from langgraph.pregel import Pregel


class LentCheckpointer(BaseCheckpointSaver[str]):
    """A checkpointer whose reads and writes all go through one lent connection: the
    transaction of a thread update, which commits them together or not at all."""

    def __init__(self, lent: LentConnection):
        super().__init__()
        self.lent = lent

    def _saver(self) -> BaseCheckpointSaver:
        return official_saver(self.lent, self.serde)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._saver().get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return iter(list(self._saver().list(config, filter=filter, before=before, limit=limit)))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._saver().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._saver().put_writes(config, writes, task_id, task_path)

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
    setup_checkpointer(store)
    config = graph_config(thread_id, checkpoint)
    config["metadata"] = {"thread_id": thread_id, "assistant_id": assistant_id}
    with store.thread_update(thread_id, user_id) as lent:
        writer = graph.copy(update={"checkpointer": LentCheckpointer(lent)})
        named = config["configurable"].get("checkpoint_id")
        if named is not None and writer.checkpointer.get_tuple(config) is None:
            raise CheckpointNotFoundError(f"thread {thread_id} has no checkpoint {named}")
        try:
            written = writer.update_state(config, values, as_node=as_node)
        except (InvalidUpdateError, ValueError) as error:
            raise InvalidStateUpdateError(f"state update refused by the graph: {error}") from None
    configurable = written["configurable"]
    return CheckpointRef(
        thread_id=thread_id,
        checkpoint_id=configurable["checkpoint_id"],
        checkpoint_ns=configurable.get("checkpoint_ns") or "",
    )

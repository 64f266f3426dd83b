"""The bodies of a thread's history and time travel (`runqueue/api/thread_state.py`), with the
reference server's field names: ThreadStateSearch, ThreadStateCheckpointRequest,
ThreadStateUpdate and its response. States are answered as schemas.ThreadStateBody."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runqueue.api.schemas import CheckpointRef, Json, Strict, refused_when_set
from runqueue.records import CheckpointRef as CheckpointRecord
from runqueue.registry.thread_state import MAX_HISTORY

DEFAULT_HISTORY = 10  # checkpoints a history read returns when no limit is given


class CheckpointConfig(Strict):
    """Which checkpoint: its id, its graph's namespace ("" for the root), and for a
    subgraph's checkpoint, the map of its parents' checkpoint ids."""

    thread_id: str | None = None
    checkpoint_ns: str | None = None
    checkpoint_id: str | None = None
    checkpoint_map: Json | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class BeforeConfig(Strict):
    """`before` as a LangGraph config, as the JS client sends it and the reference reads it:
    `{"configurable": {"checkpoint_id": ...}}`."""

    configurable: CheckpointConfig


class HistorySearch(Strict):
    limit: int = Field(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY)
    # A config naming a checkpoint, the checkpoint object itself, or its id.
    before: BeforeConfig | CheckpointConfig | str | None = None
    metadata: Json | None = None  # only checkpoints whose metadata holds these keys and values
    checkpoint: CheckpointConfig | None = None  # a subgraph's namespace, or one checkpoint
    select: list[str] | None = None  # every field is returned

    _refused = refused_when_set("select")

    def before_given(self) -> str | dict[str, Any] | None:
        if isinstance(self.before, BeforeConfig):
            return self.before.configurable.given()
        if isinstance(self.before, CheckpointConfig):
            return self.before.given()
        return self.before


class StateAtCheckpoint(Strict):
    checkpoint: CheckpointConfig
    subgraphs: bool = False
    select: list[str] | None = None

    _refused = refused_when_set("select")


class StateUpdate(Strict):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None  # the node the values come from (default: LangGraph's choice)
    checkpoint: CheckpointConfig | None = None  # after this checkpoint, not the latest
    checkpoint_id: str | None = None  # deprecated: checkpoint.checkpoint_id


class StateUpdated(BaseModel):
    """The checkpoint an update wrote, under the reference server's three names for it."""

    checkpoint: CheckpointRef
    configurable: CheckpointRef  # deprecated, as the reference still sends it
    checkpoint_id: str  # deprecated

    @classmethod
    def of(cls, written: CheckpointRecord) -> StateUpdated:
        ref = CheckpointRef(
            thread_id=written.thread_id,
            checkpoint_ns=written.checkpoint_ns,
            checkpoint_id=written.checkpoint_id,
        )
        return cls(checkpoint=ref, configurable=ref, checkpoint_id=written.checkpoint_id or "")

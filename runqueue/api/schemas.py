"""The request and response bodies, with the reference server's field names: the schema is
the documentation (GET /openapi.json), and FastAPI refuses a bad body with 422 before a
handler runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runqueue.records import RunRecord, ThreadState, ThreadView

MultitaskStrategyName = Literal["reject", "interrupt", "rollback", "enqueue"]
StreamModeName = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "events",
    "debug",
    "tasks",
    "checkpoints",
]
RunStatusName = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
ThreadStatusName = Literal["idle", "busy", "interrupted", "error"]
Json = dict[str, Any]
MAX_OFFSET = 2**31 - 1  # past any real listing; a larger one overflows the databases' integers

# The fields the official SDK may send that runqueue cannot honour: accepted only when unset
# or at their default, refused (422, naming the field) otherwise. docs/api.md lists them.
UNSUPPORTED_RUN_FIELDS = (
    "checkpoint",
    "checkpoint_id",
    "interrupt_before",
    "interrupt_after",
    "webhook",
    "after_seconds",
    "feedback_keys",
    "stream_subgraphs",
    "stream_resumable",
    "context",
)


class Strict(BaseModel):
    """A body with an unknown field is refused (422), not silently half-understood."""

    model_config = ConfigDict(extra="forbid")


# -- assistants ----------------------------------------------------------------------------


class Assistant(BaseModel):
    assistant_id: str
    graph_id: str
    name: str
    description: str | None = None
    config: Json = Field(default_factory=dict)
    context: Json = Field(default_factory=dict)
    metadata: Json = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime


class AssistantSearch(Strict):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None

    @field_validator("select")
    @classmethod
    def _no_select(cls, value: Any) -> Any:
        if value:
            raise ValueError("select is not supported by runqueue: every field is returned")
        return value


# -- threads --------------------------------------------------------------------------------


class ThreadCreate(Strict):
    thread_id: str | None = Field(None, max_length=128)
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: Any = None  # accepted and ignored when null only (validator)
    supersteps: Any = None

    @field_validator("ttl", "supersteps")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        if value is not None:
            raise ValueError(f"{info.field_name} is not supported by runqueue")
        return value


class Thread(BaseModel):
    thread_id: str
    created_at: datetime
    updated_at: datetime
    metadata: Json
    status: ThreadStatusName
    values: Any = None  # null until a run wrote state, as the reference server
    interrupts: Json = Field(default_factory=dict)
    config: Json = Field(default_factory=dict)

    @classmethod
    def of(cls, view: ThreadView, state: ThreadState | None) -> Thread:
        thread = view.thread
        interrupts: Json = {}
        if state is not None and state.interrupts:
            interrupts = {"": [dict(i) for i in state.interrupts]}
        return cls(
            thread_id=thread.thread_id,
            created_at=thread.created_at,
            updated_at=thread.updated_at,
            metadata=thread.metadata,
            status=view.status.value,
            values=state.values if state is not None else None,
            interrupts=interrupts,
        )


class ThreadSearch(Strict):
    ids: list[str] | None = Field(None, max_length=1000)
    metadata: Json | None = None
    values: Json | None = None
    status: ThreadStatusName | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None

    @field_validator("select")
    @classmethod
    def _no_select(cls, value: Any) -> Any:
        if value:
            raise ValueError("select is not supported by runqueue: every field is returned")
        return value

    @field_validator("values")
    @classmethod
    def _no_values_filter(cls, value: Any) -> Any:
        if value:
            raise ValueError("searching threads by values is not supported by runqueue")
        return value


class CheckpointRef(BaseModel):
    thread_id: str
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None


class ThreadStateBody(BaseModel):
    values: Any
    next: list[str]
    tasks: list[Json] = Field(default_factory=list)
    checkpoint: CheckpointRef
    metadata: Json
    created_at: datetime | None
    parent_checkpoint: CheckpointRef | None = None
    interrupts: list[Json] = Field(default_factory=list)

    @classmethod
    def of(cls, state: ThreadState) -> ThreadStateBody:
        return cls(
            values=state.values if state.values is not None else {},
            next=list(state.next),
            checkpoint=CheckpointRef(thread_id=state.thread_id, checkpoint_id=state.checkpoint_id),
            metadata=state.metadata,
            created_at=state.created_at,
            tasks=[dict(t) for t in state.tasks],
            interrupts=[dict(i) for i in state.interrupts],
        )


# -- runs -----------------------------------------------------------------------------------


class Command(Strict):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(Strict):
    """POST /threads/{thread_id}/runs (and /stream, /wait, and the stateless /runs)."""

    assistant_id: str = Field(min_length=1, max_length=200)
    input: Any = None
    command: Command | None = None
    config: Json | None = None
    metadata: Json | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    multitask_strategy: MultitaskStrategyName = "enqueue"
    if_not_exists: Literal["reject", "create"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    strict_resume: bool | None = None
    langsmith_tracer: Any = None
    # The SDK's other fields, refused unless unset (see UNSUPPORTED_RUN_FIELDS).
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    checkpoint: Json | None = None
    checkpoint_id: str | None = None
    interrupt_before: Any = None
    interrupt_after: Any = None
    webhook: str | None = None
    after_seconds: float | None = None
    feedback_keys: list[str] | None = None
    context: Json | None = None

    def unsupported(self) -> list[str]:
        """The fields set that runqueue cannot honour: it keeps a run and its thread
        (on_completion keep), writes every checkpoint before going on (durability sync,
        checkpoint_during), and does not trace to LangSmith."""
        refused = [name for name in UNSUPPORTED_RUN_FIELDS if getattr(self, name)]
        refused += [
            name
            for name, honoured in (
                ("on_completion", self.on_completion in (None, "keep")),
                ("durability", self.durability in (None, "sync")),
                ("checkpoint_during", self.checkpoint_during in (None, True)),
                ("langsmith_tracer", self.langsmith_tracer is None),
                ("strict_resume", not self.strict_resume),
            )
            if not honoured
        ]
        return refused


class Run(BaseModel):
    run_id: str
    thread_id: str
    assistant_id: str
    created_at: datetime
    updated_at: datetime
    status: RunStatusName
    metadata: Json
    kwargs: Json
    multitask_strategy: MultitaskStrategyName | None

    @classmethod
    def of(cls, run: RunRecord) -> Run:
        return cls(
            run_id=run.run_id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            created_at=run.created_at,
            updated_at=run.updated_at,
            status=run.status.value,
            metadata=run.metadata,
            kwargs=run.kwargs,
            multitask_strategy=run.multitask_strategy.value if run.multitask_strategy else None,
        )


class ErrorBody(BaseModel):
    detail: Any


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 413, 422, 503)
}

"""The request and response bodies, with the reference server's field names: the schema is
the documentation (GET /openapi.json), and FastAPI refuses a bad body with 422 before a
handler runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from runqueue.records import (
    MultitaskStrategy,
    PruneStrategy,
    RunRecord,
    ThreadState,
    ThreadView,
)
from runqueue.registry import MAX_PAGE, MAX_TTL_MINUTES

# The enum's values, in its order: a new strategy is accepted, and listed in /openapi.json,
# with no change here (a Literal, not the enum, keeps the schema inline as it has always been).
MultitaskStrategyName = Literal[tuple(strategy.value for strategy in MultitaskStrategy)]
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
PruneStrategyName = Literal[tuple(strategy.value for strategy in PruneStrategy)]
Json = dict[str, Any]

# The fields the official SDK may send that runqueue cannot honour: accepted only when unset
# or at their default, refused (422, naming the field) otherwise. docs/api.md lists them.
UNSUPPORTED_RUN_FIELDS = ("feedback_keys",)
Breakpoints = Literal["*"] | list[str]  # LangGraph's All ("*": every node), or node names


class Strict(BaseModel):
    """A body with an unknown field is refused (422), not silently half-understood."""

    model_config = ConfigDict(extra="forbid")


def refused_when_set(*names: str) -> Any:
    """A validator: these fields are accepted only unset (null, empty or false), as the SDK
    sends them by default; set, they are refused with 422 rather than ignored."""

    def refuse(cls: type, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise ValueError(f"{info.field_name} is not supported by runqueue")
        return value

    return field_validator(*names)(refuse)


class SearchBody(Strict):
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_PAGE)
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None  # every field is returned

    _refused = refused_when_set("select")


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


class AssistantSearch(SearchBody):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None


# -- threads --------------------------------------------------------------------------------


class ThreadTtlBody(Strict):
    """A thread's time to live: pruned with `strategy` once idle `ttl` minutes."""

    strategy: PruneStrategyName = "delete"
    ttl: float | None = Field(None, ge=0, le=MAX_TTL_MINUTES, allow_inf_nan=False)


class ThreadCreate(Strict):
    thread_id: str | None = Field(None, max_length=128)
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: ThreadTtlBody | None = None
    supersteps: Any = None

    _refused = refused_when_set("supersteps")


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


class ThreadSearch(SearchBody):
    ids: list[str] | None = Field(None, max_length=1000)
    metadata: Json | None = None
    values: Json | None = None  # search by values
    status: ThreadStatusName | None = None
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None

    _refused_values = refused_when_set("values")


class CheckpointRef(BaseModel):
    thread_id: str
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None


class ThreadStateBody(BaseModel):
    """A thread's state at one checkpoint, as the reference server's ThreadState: checkpoint,
    metadata and created_at are null for a thread with no state yet."""

    values: Any
    next: list[str]
    tasks: list[Json] = Field(default_factory=list)
    checkpoint: CheckpointRef | None
    metadata: Json | None
    created_at: datetime | None
    parent_checkpoint: CheckpointRef | None = None
    interrupts: list[Json] = Field(default_factory=list)
    checkpoint_id: str | None = None  # deprecated, still sent by the reference server
    parent_checkpoint_id: str | None = None  # deprecated, as checkpoint_id

    @classmethod
    def of(cls, state: ThreadState) -> ThreadStateBody:
        def ref(checkpoint_id: str | None) -> CheckpointRef | None:
            if checkpoint_id is None:
                return None
            return CheckpointRef(
                thread_id=state.thread_id,
                checkpoint_ns=state.checkpoint_ns,
                checkpoint_id=checkpoint_id,
            )

        return cls(
            values=state.values if state.values is not None else {},
            next=list(state.next),
            checkpoint=ref(state.checkpoint_id),
            metadata=state.metadata if state.checkpoint_id is not None else None,
            created_at=state.created_at,
            parent_checkpoint=ref(state.parent_checkpoint_id),
            tasks=[dict(t) for t in state.tasks],
            interrupts=[dict(i) for i in state.interrupts],
            checkpoint_id=state.checkpoint_id,
            parent_checkpoint_id=state.parent_checkpoint_id,
        )


# -- runs -----------------------------------------------------------------------------------


class Command(Strict):
    resume: Any = None
    update: Any = None
    goto: Any = None


class CheckpointGiven(Strict):
    """A run's `checkpoint`: a thread state's `checkpoint` object, as the SDKs send it back to
    fork from it (the JS client's useStream on an edit or a branch). `thread_id`, when given,
    is the run's thread; only the root graph's checkpoints (`checkpoint_ns` "")."""

    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    thread_id: str | None = None
    checkpoint_map: Json | None = None


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
    # A graph's LangGraph run options, as the reference server serves them; a Celery
    # assistant refuses them when set (graph_fields_set).
    context: Json | None = None
    interrupt_before: Breakpoints | None = None
    interrupt_after: Breakpoints | None = None
    stream_subgraphs: bool = False
    durability: Literal["sync", "async", "exit"] | None = None  # unset: sync
    checkpoint_during: bool | None = None  # with durability unset: true async, false exit
    stream_resumable: bool = False  # every run's stream is resumable: nothing to ask for
    strict_resume: bool | None = None
    langsmith_tracer: Any = None
    # A fork: the checkpoint of the thread the run starts from (run_creation.fork_point).
    checkpoint: CheckpointGiven | None = None
    checkpoint_id: str | None = None
    # A delayed run: it starts no earlier than this many seconds after its creation (a
    # number, as the reference's: null or a boolean is refused; 0 or negative: at once).
    after_seconds: float = Field(0, strict=True)
    # The SDK's other fields, refused unless unset (see UNSUPPORTED_RUN_FIELDS).
    webhook: str | None = None
    feedback_keys: list[str] | None = None

    def unsupported(self) -> list[str]:
        """The fields set that runqueue cannot honour: it keeps a run and its thread
        (on_completion keep), and does not trace to LangSmith."""
        refused = [name for name in UNSUPPORTED_RUN_FIELDS if getattr(self, name)]
        refused += [
            name
            for name, honoured in (
                ("on_completion", self.on_completion in (None, "keep")),
                ("langsmith_tracer", self.langsmith_tracer is None),
                ("strict_resume", not self.strict_resume),
            )
            if not honoured
        ]
        return refused

    def graph_fields_set(self) -> list[str]:
        """The graph-only run options set: what a Celery assistant refuses. `durability:
        sync` and `checkpoint_during: true` were always accepted, and still are."""
        return [
            name
            for name, unset in (
                ("context", not self.context),
                ("interrupt_before", not self.interrupt_before),
                ("interrupt_after", not self.interrupt_after),
                ("stream_subgraphs", not self.stream_subgraphs),
                ("durability", self.durability in (None, "sync")),
                ("checkpoint_during", self.checkpoint_during in (None, True)),
                ("checkpoint", self.checkpoint is None or not self.checkpoint.checkpoint_id),
                ("checkpoint_id", not self.checkpoint_id),
            )
            if not unset
        ]

    def durability_asked(self) -> str | None:
        """The run's durability: as given, else from checkpoint_during as the reference
        maps it (true: async, false: exit), else None (runqueue's default, sync)."""
        if self.durability is not None or self.checkpoint_during is None:
            return self.durability
        return "async" if self.checkpoint_during else "exit"


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
            # As the reference's: a delayed run's created_at is its due time (docs/api.md).
            created_at=run.due_at or run.created_at,
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

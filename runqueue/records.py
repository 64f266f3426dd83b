"""The public data types: run statuses, strategies and the run record."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


class RunStatus(enum.StrEnum):
    pending = "pending"  # recorded, waiting to start
    running = "running"  # claimed by a worker process
    success = "success"  # the assistant returned
    error = "error"  # the assistant raised, or its worker was lost
    timeout = "timeout"  # a time limit stopped it
    interrupted = "interrupted"  # cancelled by a user or by a newer run

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.success, RunStatus.error, RunStatus.timeout, RunStatus.interrupted}
)
INFLIGHT_STATUSES = frozenset({RunStatus.pending, RunStatus.running})


class MultitaskStrategy(enum.StrEnum):
    reject = "reject"  # refuse a new run while the thread has one in flight
    interrupt = "interrupt"  # cancel the runs in flight, keep their checkpoints
    rollback = "rollback"  # cancel the runs in flight and delete their checkpoints
    enqueue = "enqueue"  # wait behind the runs in flight, first in first out


class DisconnectMode(enum.StrEnum):
    cancel = "cancel"  # the run is cancelled when its client goes away
    continue_ = "continue"  # the run goes on without its client


class AbortAction(enum.StrEnum):
    interrupt = "interrupt"  # stop; checkpoints stay
    rollback = "rollback"  # stop; checkpoints of the run are deleted


class PruneStrategy(enum.StrEnum):
    """What pruning a thread (POST /threads/prune, or its ttl running out) does to it."""

    delete = "delete"  # the thread goes, with its runs, their history, streams and state
    keep_latest = "keep_latest"  # the thread stays, with its latest checkpoint alone


class DispatchState(enum.StrEnum):
    held = "held"  # waits behind another run of its thread; not in the broker
    queued = "queued"  # should be in the broker; published again if never claimed


@dataclass(frozen=True)
class RunRecord:
    """One run as the database holds it."""

    run_id: str
    thread_id: str
    assistant_id: str
    status: RunStatus
    multitask_strategy: MultitaskStrategy | None
    on_disconnect: DisconnectMode
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    result: Any
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    worker: str | None
    follow_up_to_run_id: str | None
    user_id: str | None
    abort_action: AbortAction | None
    attempt: int
    worker_losses: int = 0  # deliveries or attempts that took their worker down
    webhook: str | None = None  # POSTed the run once it is final (runqueue/webhooks.py)
    due_at: datetime | None = None  # a delayed run: it starts no earlier (None: at once)

    @property
    def is_final(self) -> bool:
        return self.status.is_final


@dataclass(frozen=True)
class RunEvent:
    """One status transition of a run."""

    run_id: str
    thread_id: str
    status: RunStatus
    at: datetime
    worker: str | None
    detail: str | None


@dataclass(frozen=True)
class ThreadTtl:
    """A thread's time to live: once idle this long (no run in flight, none created or ended,
    no update), the maintenance pass prunes it with `strategy`."""

    strategy: PruneStrategy
    minutes: float


@dataclass(frozen=True)
class ThreadRecord:
    """A thread: the key that orders its runs."""

    thread_id: str
    user_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    ttl: ThreadTtl | None = None  # None: kept until deleted


class ThreadStatus(enum.StrEnum):
    idle = "idle"  # no run in flight; the latest one succeeded, or was rolled back
    busy = "busy"  # a run is pending or running
    interrupted = "interrupted"  # the latest run stopped at an interrupt(), or was cancelled
    error = "error"  # the latest run failed or timed out


@dataclass(frozen=True)
class ThreadView:
    """A thread with its status, read in one statement with it."""

    thread: ThreadRecord
    status: ThreadStatus


@dataclass(frozen=True)
class Checkpoint:
    """Thread state a run saved."""

    checkpoint_id: int
    thread_id: str
    run_id: str | None  # None: copied from another thread (POST /threads/{id}/copy)
    values: Any
    created_at: datetime


@dataclass(frozen=True)
class ThreadState:
    """A thread's current state: a graph's values and pending interrupts (the latest kept
    LangGraph checkpoint), or a plain assistant's latest checkpoint."""

    thread_id: str
    values: Any  # JSON; None for a thread with no state yet
    next: tuple[str, ...] = ()  # the graph nodes that run next (pending after an interrupt)
    interrupts: tuple[dict[str, Any], ...] = ()  # pending interrupt() calls: {"value", "id"}
    tasks: tuple[dict[str, Any], ...] = ()  # the next tasks: {"id", "name", "interrupts", ...}
    checkpoint_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    assistant_id: str | None = None  # whose state this is: the thread's latest run's assistant
    parent_checkpoint_id: str | None = None  # the checkpoint this one was written after
    checkpoint_ns: str = ""  # whose checkpoint: "" for the root graph, else a subgraph's


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint of a thread, as LangGraph's config names it (the API's `checkpoint`
    object): which graph of the thread (`checkpoint_ns`, "" for the root) and which of its
    checkpoints (`checkpoint_id`; None: the latest)."""

    thread_id: str
    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_map: dict[str, Any] | None = None  # a subgraph's: its parents' checkpoint ids


# How deep any JSON payload may nest, whatever Settings.max_json_depth says: deeper values
# break the worker's hand-off to its pool (pickle fails from ~420 levels), the HTTP API's
# response serializer, and json.dumps itself (Python's recursion limit).
MAX_JSON_DEPTH_CEILING = 200
RESERVED_EVENTS = frozenset({"metadata", "error", "end", "gap"})  # written by runqueue only


@dataclass(frozen=True)
class StreamEvent:
    """One event of a run's stream. Ids are "1", "2", ... in the order written; `gap` (events
    trimmed or expired before they were read) and the `end` of an expired stream have no id:
    nothing can be resumed after them. A `gap` with an id stands in the stream for one event
    left out because it was over the size limit: its data is {"left_out": LeftOut}."""

    id: str | None
    event: str  # metadata | error | end | gap, or what the assistant emitted
    data: Any  # JSON


class LeftOut(TypedDict):
    """What a `gap` standing for one left-out event tells its readers."""

    event: str  # the event's name (`values`, `updates|agent:...`)
    bytes: int  # the size of its data's JSON
    limit: int  # the stream's size limit of one event
    setting: str  # the setting of that limit: RUNQUEUE_STREAM_MAX_EVENT_BYTES
    read: str  # where its full value can be read, e.g. GET /threads/{t}/runs/{r}/join


@dataclass(frozen=True)
class ApiKeyRecord:
    """An HTTP API key as stored: never the key itself, only who it speaks for."""

    key_id: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class WorkerRecord:
    """A worker of the fleet as it recorded itself (the `workers` table)."""

    name: str  # Celery node name, e.g. worker@host
    pool: str  # prefork, threads, solo
    concurrency: int
    assistants: list[str]  # the assistants it serves
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None


class CronCompletion(enum.StrEnum):
    """What a stateless cron's fire does with the new thread once its run has ended."""

    delete = "delete"  # the thread (with its run) is deleted by the scheduler's pass
    keep = "keep"  # the thread stays; the caller cleans it up


@dataclass(frozen=True)
class CronRecord:
    """A cron: a run created on `schedule` (croniter syntax, in `timezone`) until end_time.
    thread_id None: stateless, each fire on a new thread (on_run_completed says its fate)."""

    cron_id: str
    assistant_id: str
    thread_id: str | None
    user_id: str | None
    schedule: str
    timezone: str | None
    end_time: datetime | None
    enabled: bool
    on_run_completed: CronCompletion | None
    payload: dict[str, Any]  # the request as given (input, config, context, ...)
    kwargs: dict[str, Any]  # the kwargs each fired run gets
    metadata: dict[str, Any]
    multitask_strategy: MultitaskStrategy | None
    webhook: str | None
    next_run_date: datetime | None  # the next tick the scheduler fires; None: no more
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CronFire:
    """One tick of a cron, fired once across the fleet (cron_fires: one row per cron and
    tick): the run it created, or why none (refused: its thread was busy under reject)."""

    cron_id: str
    tick: datetime
    fired_at: datetime
    thread_id: str
    run_id: str | None
    outcome: str  # "created" or "refused"
    detail: str | None = None


@dataclass(frozen=True)
class AssistantRecord:
    """An assistant: a graph with its config, context and metadata, at one version. A stored
    one is its active version (`version`); a registered graph's default is version 1."""

    assistant_id: str  # a UUID (a default's: uuid5 of its graph's name, as the reference's)
    graph_id: str  # the registered graph (or Celery task) it runs
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int  # the active version (versions count from 1)
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None  # its owner (None: every user's, as a default is)
    default: bool = False  # a registered graph's default assistant: read-only

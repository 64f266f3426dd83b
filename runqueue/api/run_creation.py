"""A run request's body made into a run: the kwargs its assistant takes, the bounds checked
before anything is written (nesting, the user's runs in flight), and the one create call
every creating route makes."""

from __future__ import annotations

from typing import Any

from runqueue import validation
from runqueue.api.context import ApiContext
from runqueue.api.schemas import RunCreate
from runqueue.errors import (
    CheckpointNotFoundError,
    InvalidPayloadError,
    ThreadNotFoundError,
    TooManyRequestsError,
    plural,
)
from runqueue.records import RunRecord
from runqueue.registry.assistants import with_assistant
from runqueue.worker.task import RunTask

# The LangGraph stream modes runqueue's graphs stream. `messages-tuple` is LangGraph's own
# `messages` mode ([chunk, metadata] events named `messages`).
GRAPH_MODES = {
    "values": "values",
    "updates": "updates",
    "custom": "custom",
    "messages": "messages",
    "messages-tuple": "messages",
    "events": "events",
    "debug": "debug",
    "tasks": "tasks",
    "checkpoints": "checkpoints",
}
RUNS_IN_FLIGHT_RETRY_AFTER = 2.0  # seconds: a run of the user's may have ended by then


def run_kwargs(task: RunTask, body: RunCreate) -> dict[str, Any]:
    """The run's kwargs from the request: a graph takes the LangGraph run fields; a Celery
    assistant takes `input` as its keyword arguments."""
    unsupported = body.unsupported()
    if unsupported:
        raise InvalidPayloadError(
            f"{', '.join(unsupported)}: not supported by runqueue (see docs/api.md)"
        )
    modes = body.stream_mode
    names = [modes] if isinstance(modes, str) else list(modes or [])
    refused = [mode for mode in names if mode not in GRAPH_MODES]
    if refused:
        raise InvalidPayloadError(
            f"stream_mode {refused[0]!r} is not supported by runqueue "
            f"(one of: {', '.join(GRAPH_MODES)})"
        )
    if task.takes_run_fields:
        kwargs: dict[str, Any] = {}
        if body.input is not None:
            kwargs["input"] = body.input
        config = without_fork_keys(body.config)
        if config:
            kwargs["config"] = config
        if body.command is not None:
            kwargs["command"] = body.command.model_dump(exclude_none=True)
        if names:
            kwargs["stream_mode"] = list(dict.fromkeys(GRAPH_MODES[m] for m in names))
        return kwargs | graph_options(body)
    graph_only = body.graph_fields_set()
    if graph_only:
        raise InvalidPayloadError(
            f"{', '.join(graph_only)}: assistant {task.name!r} is a Celery task, not a graph; "
            "these run options are a graph's"
        )
    if body.config or body.command is not None:
        raise InvalidPayloadError(
            f"assistant {task.name!r} is a Celery task: it takes `input` (an object of its "
            "keyword arguments), not config or command"
        )
    if body.input is not None and not isinstance(body.input, dict):
        raise InvalidPayloadError(
            f"assistant {task.name!r} takes `input` as an object of keyword arguments"
        )
    return dict(body.input or {})


def graph_options(body: RunCreate) -> dict[str, Any]:
    """The LangGraph run options a graph run's kwargs carry (runqueue.langgraph.run_options),
    as the reference server maps them: `context` and config.configurable are mirrored into
    each other (a graph reads either), and refused together; durability from
    checkpoint_during when unset; stream_resumable asks for nothing (every stream is)."""
    options: dict[str, Any] = {}
    configurable = (body.config or {}).get("configurable")
    if body.context:
        if configurable:
            raise InvalidPayloadError(
                "context, config.configurable: give one, not both (context is LangGraph's "
                "replacement for configurable; a graph run gets it as both)"
            )
        options["context"] = body.context
        options["config"] = {**(body.config or {}), "configurable": dict(body.context)}
    elif isinstance(configurable, dict) and configurable:
        # Keys the run sets itself stay out: refused as config.configurable's, as sent.
        context = {
            k: v for k, v in configurable.items() if k not in validation.run_set_keys(configurable)
        }
        if context:
            options["context"] = context
    for name in ("interrupt_before", "interrupt_after"):
        if getattr(body, name):
            options[name] = getattr(body, name)
    if body.stream_subgraphs:
        options["stream_subgraphs"] = True
    durability = body.durability_asked()
    if durability is not None:
        options["durability"] = durability
    fork_from = fork_point(body)
    if fork_from is not None:
        options["checkpoint_id"] = fork_from
    return options


# Where a fork's checkpoint may be given: the SDKs send `checkpoint` (a thread state's
# checkpoint object) or `checkpoint_id`; the reference also takes config.configurable's.
FORK_KEYS = ("checkpoint_id", "checkpoint_ns")


def fork_point(body: RunCreate) -> str | None:
    """The checkpoint a graph run forks from (None: the thread's newest), from `checkpoint`,
    `checkpoint_id` or config.configurable, which must agree where more than one is given;
    a root graph's checkpoint only (`checkpoint_ns` "": a subgraph's is refused)."""
    configurable = (body.config or {}).get("configurable")
    configurable = configurable if isinstance(configurable, dict) else {}
    checkpoint = body.checkpoint
    namespaces = {"config.configurable.checkpoint_ns": configurable.get("checkpoint_ns")}
    given = {
        "checkpoint_id": body.checkpoint_id,
        "config.configurable.checkpoint_id": configurable.get("checkpoint_id"),
    }
    if checkpoint is not None:
        namespaces["checkpoint.checkpoint_ns"] = checkpoint.checkpoint_ns
        given["checkpoint.checkpoint_id"] = checkpoint.checkpoint_id
        if checkpoint.checkpoint_map:
            raise InvalidPayloadError(
                "checkpoint.checkpoint_map: runqueue forks from a root graph's checkpoint only"
            )
    for name, namespace in namespaces.items():
        if namespace not in (None, ""):
            raise InvalidPayloadError(
                f"{name} {validation.shown(namespace)}: runqueue forks from a root graph's "
                'checkpoint only (checkpoint_ns "")'
            )
    ids = {name: validation.checkpoint_id(name, value) for name, value in given.items() if value}
    if len(set(ids.values())) > 1:
        raise InvalidPayloadError(
            f"{', '.join(ids)}: two different checkpoints given; a run forks from one"
        )
    return next(iter(ids.values()), None)


def without_fork_keys(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config a graph run keeps: its configurable without the fork's keys, which the run
    carries as its `checkpoint_id` option (fork_point)."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, dict) or not configurable.keys() & set(FORK_KEYS):
        return config
    kept = {key: value for key, value in configurable.items() if key not in FORK_KEYS}
    rest = {key: value for key, value in (config or {}).items() if key != "configurable"}
    return rest | ({"configurable": kept} if kept else {})


def check_nesting(body: RunCreate, limit: int) -> None:
    """InvalidPayloadError (422) naming the field that nests deeper than `limit` levels: the
    run's kwargs are checked again as a whole, but a caller sent `input`, not kwargs."""
    for name in ("input", "config", "context", "metadata"):
        validation.check_nesting(name, getattr(body, name), limit)
    if body.command is not None:
        validation.check_nesting("command", body.command.model_dump(exclude_none=True), limit)


async def check_runs_in_flight(api: ApiContext, user: str | None) -> None:
    """TooManyRequestsError (429) once the user has api_max_runs_in_flight_per_user runs
    pending or running: one key cannot queue its runs ahead of everyone else's. A bound,
    not an exact quota: requests of one user that race each other may pass it by the
    number of API threads (docs/api.md)."""
    bound = api.settings.api_max_runs_in_flight_per_user
    if await api.manager.count_inflight_of_user(user, up_to=bound) >= bound:
        raise TooManyRequestsError(
            f"{plural(bound, 'run')} of yours {'is' if bound == 1 else 'are'} already pending or "
            "running "
            "(RUNQUEUE_API_MAX_RUNS_IN_FLIGHT_PER_USER): wait for one to end",
            retry_after=RUNS_IN_FLIGHT_RETRY_AFTER,
        )


async def check_fork(
    api: ApiContext,
    thread_id: str,
    body: RunCreate,
    fork_from: str,
    user: str | None,
    *,
    stateless: bool,
) -> None:
    """A fork's checkpoint is one of its thread's, checked before anything is written: 404
    for an unknown one (where the reference starts the run from an empty state), for an
    unknown or another user's thread, and for a stateless run (its new thread has none)."""
    given = body.checkpoint.thread_id if body.checkpoint is not None else None
    if given not in (None, thread_id):
        raise InvalidPayloadError(
            f"checkpoint.thread_id is {validation.shown(given)}, but the run's thread is "
            f"{thread_id!r}: a run forks from a checkpoint of its own thread"
        )
    if stateless:
        raise CheckpointNotFoundError(
            f"checkpoint {fork_from} not found: a stateless run starts a new thread, which has "
            "no checkpoint to fork from"
        )
    view = await api.manager.get_thread(thread_id, user_id=user)
    if view is None:
        raise ThreadNotFoundError(f"thread {thread_id} not found")
    # The checkpoint itself is looked for by the registry (GraphTask.check_fork_point), for
    # library callers as for this API.


async def create_run(
    api: ApiContext, thread_id: str, body: RunCreate, user: str | None, *, stateless: bool
) -> RunRecord:
    """The run a creating route asks for, checked and bounded before the registry applies
    the thread's strategy; each run's thread is its user's own (own_thread)."""
    validation.thread_id(thread_id)
    check_nesting(body, api.settings.max_json_depth)
    await check_runs_in_flight(api, user)
    name, assistant = await api.manager.assistant_for_run(body.assistant_id, user_id=user)
    task = api.manager.sync.app.tasks[name]
    kwargs = run_kwargs(task, body)
    if assistant is not None:  # its version's config and context under the run's own
        kwargs = with_assistant(assistant, kwargs)
    if "checkpoint_id" in kwargs and task.takes_run_fields:
        await check_fork(api, thread_id, body, kwargs["checkpoint_id"], user, stateless=stateless)
    return await api.manager.create_or_reject(
        thread_id,
        name,
        kwargs=kwargs,
        metadata=body.metadata,
        multitask_strategy=body.multitask_strategy,
        on_disconnect=body.on_disconnect,
        user_id=user,
        if_not_exists="create" if stateless else body.if_not_exists,
        own_thread=True,
        webhook=body.webhook,
        after=body.after_seconds,
    )

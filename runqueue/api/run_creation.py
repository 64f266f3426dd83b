"""A run request's body made into a run: the kwargs its assistant takes, the bounds checked
before anything is written (nesting, the user's runs in flight), and the one create call
every creating route makes."""

from __future__ import annotations

from typing import Any

from runqueue import validation
from runqueue.api.context import ApiContext
from runqueue.api.schemas import RunCreate
from runqueue.errors import InvalidPayloadError, TooManyRequestsError, plural
from runqueue.records import RunRecord
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
        if body.config:
            kwargs["config"] = body.config
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
    return options


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


async def create_run(
    api: ApiContext, thread_id: str, body: RunCreate, user: str | None, *, stateless: bool
) -> RunRecord:
    """The run a creating route asks for, checked and bounded before the registry applies
    the thread's strategy; each run's thread is its user's own (own_thread)."""
    validation.thread_id(thread_id)
    check_nesting(body, api.settings.max_json_depth)
    await check_runs_in_flight(api, user)
    name = api.manager.assistant_name(body.assistant_id)
    task = api.manager.sync.app.tasks[name]
    return await api.manager.create_or_reject(
        thread_id,
        name,
        kwargs=run_kwargs(task, body),
        metadata=body.metadata,
        multitask_strategy=body.multitask_strategy,
        on_disconnect=body.on_disconnect,
        user_id=user,
        if_not_exists="create" if stateless else body.if_not_exists,
        own_thread=True,
    )

"""The LangGraph run options a run's kwargs may carry besides input, config, stream_mode and
command, with the reference server's meaning: checked when a run is created, and turned
into Pregel.astream()'s keyword arguments when it executes.

- `context`: the run's runtime context (LangGraph 1.x `Runtime.context`), filtered by the
  graph's context_schema as the Agent Server filters it;
- `interrupt_before`, `interrupt_after`: static breakpoints, "*" or a list of node names;
- `stream_subgraphs`: whether subgraphs' chunks are streamed (`updates|sub:<task id>`);
- `durability`: when checkpoints are written: `sync` (before the next step starts),
  `async` (while it runs), `exit` (only when the run ends);
- `checkpoint_id`: a fork: the run starts from that checkpoint of its thread, not from the
  newest (runqueue.langgraph.forks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from runqueue import validation
from runqueue.errors import InvalidPayloadError

logger = logging.getLogger(__name__)

RUN_OPTIONS: tuple[str, ...] = (
    "context",
    "interrupt_before",
    "interrupt_after",
    "stream_subgraphs",
    "durability",
    "checkpoint_id",
)
DURABILITIES = ("sync", "async", "exit")
ALL_NODES = "*"  # LangGraph's `All`: every node is a breakpoint
_ASTREAM_OPTIONS = ("context", "interrupt_before", "interrupt_after", "durability")


def check_run_options(kwargs: Mapping[str, Any]) -> None:
    """InvalidPayloadError naming the field, for a bad value of any RUN_OPTIONS key: a run
    is refused when it is created, not failed when a worker reaches it."""
    context = kwargs.get("context")
    if context is not None and not isinstance(context, dict):
        raise InvalidPayloadError(f"context must be a JSON object, not {type(context).__name__}")
    reserved = validation.run_set_keys(context or {})
    if reserved:
        raise InvalidPayloadError(
            f"context.{reserved[0]} is set by the graph run itself, not by a caller"
        )
    for name in ("interrupt_before", "interrupt_after"):
        nodes = kwargs.get(name)
        if nodes is None or nodes == ALL_NODES:
            continue
        if not isinstance(nodes, list | tuple) or not all(isinstance(n, str) for n in nodes):
            raise InvalidPayloadError(f'{name} must be "*" or a list of node names')
    subgraphs = kwargs.get("stream_subgraphs")
    if subgraphs is not None and not isinstance(subgraphs, bool):
        raise InvalidPayloadError("stream_subgraphs must be true or false")
    durability = kwargs.get("durability")
    if durability is not None and durability not in DURABILITIES:
        raise InvalidPayloadError(
            f"durability must be one of {', '.join(DURABILITIES)}, not {durability!r}"
        )
    if kwargs.get("checkpoint_id") is not None:
        validation.checkpoint_id("checkpoint_id", kwargs["checkpoint_id"])


def astream_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for Pregel.astream()/astream_events() from a run's kwargs: context,
    interrupt_before, interrupt_after, durability (only those given). Not stream_mode or
    subgraphs."""
    return {name: kwargs[name] for name in _ASTREAM_OPTIONS if kwargs.get(name) is not None}


def filtered_context(graph: Any, context: dict | None) -> dict | None:
    """The run's context filtered by the graph's context_schema, as the reference server does:
    keys its JSON schema has no property for are dropped (a dataclass schema would refuse
    them), the rest kept; unfiltered when the graph has no schema or none can be made."""
    if not context:
        return context
    try:
        schema = graph.get_context_jsonschema()
    except Exception as error:  # noqa: BLE001 - as the reference: a schema error filters nothing
        logger.debug("no context schema to filter by: %s", type(error).__name__)
        return context
    properties = (schema or {}).get("properties") or {}
    if not properties:
        return context
    return {key: value for key, value in context.items() if key in properties}

"""What GET /assistants/{id}/graph, /schemas and /subgraphs show of a graph assistant: its
drawable graph as JSON and its JSON schemas, made as the LangGraph Agent Server makes them
(langgraph_api/api/assistants.py), from the graph this process builds (GraphTask.graph)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from runqueue.errors import InvalidPayloadError

if TYPE_CHECKING:
    from langgraph.pregel import Pregel

logger = logging.getLogger(__name__)

# configurable keys a graph run sets itself: not part of the config schema a client fills in
EXCLUDED_CONFIG_SCHEMA = (
    "__pregel_checkpointer",
    "__pregel_store",
    "checkpoint_id",
    "checkpoint_ns",
    "thread_id",
)


def graph_json(graph: Pregel, xray: bool | int) -> dict[str, Any]:
    """The drawable graph as JSON, without each node's `data.id` (a Python import path)."""
    try:
        drawn = graph.get_graph(xray=xray).to_json()
    except NotImplementedError:
        raise InvalidPayloadError("the graph does not support visualization") from None
    for node in drawn.get("nodes", []):
        data = node.get("data")
        if isinstance(data, dict):
            data.pop("id", None)
    return drawn


def subgraph_schemas(graph: Pregel, namespace: str | None, recurse: bool) -> dict[str, Any]:
    """Each subgraph's schemas by its namespace."""
    try:
        found = graph.get_subgraphs(namespace=namespace, recurse=recurse)
        return {name: graph_schemas(subgraph) for name, subgraph in found}
    except NotImplementedError:
        raise InvalidPayloadError("the graph does not support visualization") from None


def graph_schemas(graph: Pregel) -> dict[str, Any]:
    """input, output, state, config and context schemas; None for one that cannot be made
    (logged with the graph's name and the error's type)."""
    makers = {
        "input_schema": lambda: graph.get_input_jsonschema(),
        "output_schema": lambda: graph.get_output_jsonschema(),
        "state_schema": lambda: _state_jsonschema(graph),
        "config_schema": lambda: _configurable_jsonschema(graph),
        "context_schema": lambda: graph.get_context_jsonschema(),
    }
    schemas: dict[str, Any] = {}
    for name, make in makers.items():
        try:
            schemas[name] = make()
        except Exception as error:  # noqa: BLE001 - as the reference: that schema is None
            logger.warning(
                "graph %s: no %s (%s)",
                graph.name,
                name,
                type(error).__name__,
                extra={"action": "schema_unavailable"},
            )
            schemas[name] = None
    return schemas


def _state_jsonschema(graph: Pregel) -> dict[str, Any]:
    from langchain_core.runnables.utils import create_model

    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        channel = graph.channels[key]
        try:
            create_model(key, __root__=(channel.UpdateType, None)).model_json_schema()
            fields[key] = (channel.UpdateType, None)
        except Exception:  # noqa: BLE001 - as the reference: a type pydantic cannot show is Any
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _configurable_jsonschema(graph: Pregel) -> dict[str, Any]:
    """The schema of config.configurable alone (not Config's other keys)."""
    from pydantic import TypeAdapter

    config_schema = graph.config_schema()
    fields = getattr(config_schema, "model_fields", None) or {}
    if "configurable" not in fields:
        return {}
    schema = TypeAdapter(fields["configurable"].annotation).json_schema()
    if schema:
        for key in EXCLUDED_CONFIG_SCHEMA:
            schema.get("properties", {}).pop(key, None)
    config_type = getattr(graph, "config_type", None)
    if config_type is not None and hasattr(config_type, "__name__"):
        schema["title"] = config_type.__name__
    return schema

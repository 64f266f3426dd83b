"""Differential conformance of the assistant endpoints: create, get, patch (versions),
versions, latest, search, count, delete, and a graph's schemas, drawing and subgraphs. The
same langgraph-sdk script runs against the LangGraph reference server and runqueue, with the
harness of test_api_conformance.py (its `servers` fixture: one server pair for this file);
the transcripts must match item by item, except for the deliberate differences below, each
of which must still occur."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from runqueue.registry.assistants import default_assistant_id
from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module's fixture: the reference and runqueue, side by side
    transcripts,
)

pytestmark = pytest.mark.integration

KNOWN_DIFFERENCES: dict[str, Known] = {
    "latest.context": Known(
        {"k": "v2"},
        {"k": "v1"},
        "POST /assistants/{id}/latest makes every field of that version active again, its "
        "context too; the reference's in-memory server (`langgraph dev`) restores config, "
        "metadata, name and description but keeps the newer context",
    ),
}


def shape(assistant: dict[str, Any]) -> dict[str, Any]:
    """An assistant as compared: its fields, without its random id and times (whose
    presence counts), its metadata's `marker` (each server's own) as present."""
    shown = {
        key: (bool(value) if key in ("assistant_id", "created_at", "updated_at") else value)
        for key, value in assistant.items()
    }
    if "marker" in shown.get("metadata", {}):
        shown["metadata"] = {**shown["metadata"], "marker": True}
    return shown


async def lifecycle(client: LangGraphClient, t: Transcript) -> None:  # noqa: PLR0915
    raw = client.http.client
    marker = uuid.uuid4().hex
    default = default_assistant_id(GRAPH)
    found = await client.assistants.search(graph_id=GRAPH)
    t.note("search.default", [shape(a) for a in found])
    t.note("get.default", shape(await client.assistants.get(default)))

    made = await client.assistants.create(
        GRAPH, config={"configurable": {"k": "v1"}}, metadata={"marker": marker}
    )
    aid = made["assistant_id"]
    t.note("create", shape(made))
    response = await raw.post("/assistants", json={"graph_id": GRAPH, "assistant_id": aid})
    t.note("create.exists", error_shape(response))
    same = await client.assistants.create(GRAPH, assistant_id=aid, if_exists="do_nothing")
    t.note("create.do_nothing", (same["assistant_id"] == aid, same["version"]))
    response = await raw.post("/assistants", json={"graph_id": "no-such-graph"})
    t.note("create.unknown_graph", error_shape(response))
    response = await raw.post(
        "/assistants",
        json={"graph_id": GRAPH, "config": {"configurable": {"a": 1}}, "context": {"a": 1}},
    )
    t.note("create.configurable_and_context", error_shape(response))

    second = await client.assistants.update(aid, config={"configurable": {"k": "v2"}})
    t.note("patch.config", shape(second))
    third = await client.assistants.update(aid, metadata={"n": 1}, name="Renamed")
    t.note("patch.metadata", shape(third))
    versions = await client.assistants.get_versions(aid)
    t.note("versions", [shape(v) for v in versions])
    t.note(
        "versions.page",
        [v["version"] for v in await client.assistants.get_versions(aid, limit=1, offset=1)],
    )

    latest = await client.assistants.set_latest(aid, 1)
    t.note("latest", (latest["version"], latest["config"], shape(latest)["metadata"]))
    t.note("latest.name", latest["name"])
    t.note("latest.context", latest["context"])
    t.note("latest.get", (await client.assistants.get(aid))["version"])
    response = await raw.post(f"/assistants/{aid}/latest", json={"version": 9})
    t.note("latest.unknown_version", error_shape(response))

    t.note(
        "search.metadata",
        [
            a["assistant_id"] == aid
            for a in await client.assistants.search(metadata={"marker": marker})
        ],
    )
    t.note(
        "search.name",
        [a["name"] for a in await client.assistants.search(graph_id=GRAPH, name="untit")],
    )
    ordered = await client.assistants.search(graph_id=GRAPH, sort_by="created_at", sort_order="asc")
    t.note("search.sorted", [a["assistant_id"] == aid for a in ordered])
    page = await client.assistants.search(graph_id=GRAPH, limit=1, response_format="object")
    t.note("search.page", (len(page["assistants"]), page["next"]))
    t.note("count.graph", await client.assistants.count(graph_id=GRAPH))
    t.note("count.metadata", await client.assistants.count(metadata={"marker": marker}))
    t.note("count.none", await client.assistants.count(metadata={"marker": "none"}))
    response = await raw.post("/assistants/search", json={"graph_id": "no-such-graph"})
    t.note("search.unknown_graph", error_shape(response))

    schemas = await client.assistants.get_schemas(aid)
    t.note("schemas", schemas)
    t.note("schemas.default", await client.assistants.get_schemas(default) == schemas)
    t.note("graph", await client.assistants.get_graph(aid))
    t.note("graph.xray", await client.assistants.get_graph(aid, xray=True))
    t.note("subgraphs", await client.assistants.get_subgraphs(aid))

    unknown = str(uuid.uuid4())
    t.note("get.unknown", error_shape(await raw.get(f"/assistants/{unknown}")))
    t.note("patch.unknown", error_shape(await raw.patch(f"/assistants/{unknown}", json={})))
    t.note(
        "versions.unknown", error_shape(await raw.post(f"/assistants/{unknown}/versions", json={}))
    )
    t.note("delete.unknown", error_shape(await raw.delete(f"/assistants/{unknown}")))
    t.note("delete", (await raw.delete(f"/assistants/{aid}")).status_code)
    t.note("delete.get", error_shape(await raw.get(f"/assistants/{aid}")))
    t.note("delete.count", await client.assistants.count(metadata={"marker": marker}))


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    t = Transcript()
    await lifecycle(client, t)
    return t.items


def test_assistants_answer_as_the_reference_server_does(servers) -> None:  # noqa: ANN001, F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)

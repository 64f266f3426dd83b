"""Differential conformance of the Store endpoints: PUT/GET/DELETE /store/items, POST
/store/items/search and POST /store/namespaces, and the memory graph that uses the Store
(tests/store_graphs.py). The same langgraph-sdk script runs against the LangGraph reference
server and runqueue (PostgresStore on PostgreSQL), with the harness of
test_api_conformance.py (its `servers` fixture: one server pair for this file); the
transcripts must match item by item (status codes and shapes: which keys, which values),
except for the deliberate differences below, each of which must still occur."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient

from tests.integration.test_api_conformance import (
    Known,
    Servers,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module's fixture: the reference and runqueue, side by side
    transcripts,
)

pytestmark = pytest.mark.integration

PLAIN_TEXT_REFUSAL = (
    "runqueue answers every refusal as JSON {'detail': ...}; the reference answers a bad "
    "namespace label with plain text and a missing key with {'error': ...}"
)
KNOWN_DIFFERENCES: dict[str, Known] = {
    "get.bad_label": Known((422, False), (422, True), PLAIN_TEXT_REFUSAL),
    "put.bad_label": Known((422, False), (422, True), PLAIN_TEXT_REFUSAL),
    "get.no_key": Known((400, False), (400, True), PLAIN_TEXT_REFUSAL),
    "namespaces.bad_label": Known((422, False), (422, True), PLAIN_TEXT_REFUSAL),
    "namespaces.all": Known(
        [["conformance", "none"], ["conformance", "other"], ["conformance", "prefs"]],
        [["conformance", "other"], ["conformance", "prefs"]],
        "a namespace is listed while it holds items (PostgresStore, SqliteStore); the "
        "reference's in-memory store also lists one that a GET of a missing item looked in "
        "(`conformance.none`), with no item in it",
    ),
}


def item_shape(item: dict[str, Any] | None) -> Any:
    """An item as compared: its keys, namespace, key and value (timestamps differ)."""
    if item is None:
        return None
    return sorted(item), item["namespace"], item["key"], item["value"]


async def endpoints(client: LangGraphClient, t: Transcript) -> None:
    raw: httpx.AsyncClient = client.http.client
    ns = ["conformance", "prefs"]
    response = await raw.put("/store/items", json={"namespace": ns, "key": "a", "value": {"n": 1}})
    t.note("put.status", response.status_code)
    await client.store.put_item(ns, "b", {"n": 2, "tag": "x"})
    await client.store.put_item(["conformance", "other"], "c", {"n": 3, "tag": "x"}, ttl=30)
    t.note("get", item_shape(await client.store.get_item(ns, "a")))
    response = await raw.get("/store/items", params={"namespace": "conformance.prefs", "key": "a"})
    t.note("get.raw", (response.status_code, sorted(response.json())))
    response = await raw.get("/store/items", params={"namespace": "conformance.none", "key": "a"})
    t.note("get.missing", (response.status_code, response.json()))
    response = await raw.get("/store/items", params={"namespace": "conformance..x", "key": "a"})
    t.note("get.bad_label", error_shape(response))
    response = await raw.get("/store/items", params={"namespace": "conformance.prefs"})
    t.note("get.no_key", error_shape(response))
    bodies = {
        "put.bad_label": {"namespace": ["a.b"], "key": "k", "value": {}},
        "put.value_not_object": {"namespace": ns, "key": "k", "value": 1},
        "put.no_value": {"namespace": ns, "key": "k"},
        "put.empty_namespace": {"namespace": [], "key": "k", "value": {}},
    }
    for name, body in bodies.items():
        t.note(name, error_shape(await raw.put("/store/items", json=body)))
    await search(client, t)
    await namespaces(client, t)
    response = await raw.request("DELETE", "/store/items", json={"namespace": ns, "key": "a"})
    t.note("delete.status", response.status_code)
    response = await raw.request("DELETE", "/store/items", json={"namespace": ns, "key": "a"})
    t.note("delete.again", response.status_code)
    response = await raw.request("DELETE", "/store/items", json={"namespace": ns})
    t.note("delete.no_key", error_shape(response))
    t.note("get.deleted", await client.store.get_item(ns, "a"))


async def search(client: LangGraphClient, t: Transcript) -> None:
    found = await client.store.search_items(["conformance"])
    t.note("search.keys", sorted(sorted(item) for item in found["items"]))
    t.note("search.items", sorted((i["key"], i["namespace"], i["value"]) for i in found["items"]))
    t.note("search.scores", [item["score"] for item in found["items"]])
    found = await client.store.search_items(["conformance"], filter={"tag": "x"})
    t.note("search.filter", sorted(item["key"] for item in found["items"]))
    found = await client.store.search_items(["conformance", "prefs"], limit=1)
    t.note("search.limit", len(found["items"]))
    pages = [await client.store.search_items(["conformance"], limit=1, offset=n) for n in (0, 1, 2)]
    t.note("search.pages", sorted(p["items"][0]["key"] for p in pages))
    found = await client.store.search_items(["conformance"], offset=3)
    t.note("search.past_end", found["items"])
    found = await client.store.search_items(["conformance"], query="anything", limit=5)
    t.note("search.query_without_index", sorted(item["key"] for item in found["items"]))
    found = await client.store.search_items(["nothing-here"])
    t.note("search.empty", found)


async def namespaces(client: LangGraphClient, t: Transcript) -> None:
    t.note("namespaces.all", sorted((await client.store.list_namespaces())["namespaces"]))
    listed = await client.store.list_namespaces(prefix=["conformance"], max_depth=1)
    t.note("namespaces.max_depth", listed)
    listed = await client.store.list_namespaces(suffix=["prefs"])
    t.note("namespaces.suffix", listed)
    listed = await client.store.list_namespaces(prefix=["conformance"], limit=1, offset=1)
    t.note("namespaces.page", len(listed["namespaces"]))
    response = await client.http.client.post("/store/namespaces", json={"prefix": ["a.b"]})
    t.note("namespaces.bad_label", error_shape(response))


async def memory_graph(client: LangGraphClient, t: Transcript) -> None:
    """The memory graph remembers in one thread and recalls in another (the reference has
    no users: one namespace for all; runqueue's is the caller's)."""
    first = (await client.threads.create())["thread_id"]
    values = await client.runs.wait(first, "memory", input={"remember": "teal"})
    t.note("memory.first", values)
    second = (await client.threads.create())["thread_id"]
    t.note("memory.second", await client.runs.wait(second, "memory", input={}))
    t.note("memory.item", item_shape(await client.store.get_item(["preferences"], "color")))


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    parts = [Transcript(), Transcript()]
    await endpoints(client, parts[0])
    await memory_graph(client, parts[1])
    return [item for part in parts for item in part.items]


def test_the_store_answers_as_the_reference_server_does(servers: Servers) -> None:  # noqa: F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)

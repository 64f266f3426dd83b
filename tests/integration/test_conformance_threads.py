"""Differential conformance of the thread endpoints issue 27 added: PATCH /threads/{id}, POST
/threads/count, POST /threads/{id}/copy and POST /threads/prune, and the graph a run stamps
into its thread's metadata. The same langgraph-sdk script runs against the LangGraph
reference server and runqueue, with the harness of test_api_conformance.py (its `servers`
fixture: one server pair for this file); the transcripts must match item by item, except
for the deliberate differences below, each of which must still occur."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from runqueue import PruneStrategy, SyncRunManager, ThreadTtl, create_app
from tests.integration.conftest import create_key
from tests.integration.test_api_conformance import (
    GRAPH,
    Known,
    Servers,
    Transcript,
    assert_conformant,
    error_shape,
    servers,  # noqa: F401 - the module's fixture: the reference and runqueue, side by side
    settle_thread,
    start_busy_run,
    transcripts,
)
from tests.integration.test_thread_retention import (
    copy_scenario,
    delta_scenario,
    sweep_scenario,
)
from workers.assistants import register_with_journal

pytestmark = pytest.mark.integration

KNOWN_DIFFERENCES: dict[str, Known] = {
    "copy.unknown": Known(
        (409, True),
        (404, True),
        "copying a thread that does not exist is 404 in runqueue, as every other request "
        "naming an unknown thread; the reference answers 409 (its copy found nothing to copy)",
    ),
    "copy.busy": Known(
        200,
        409,
        "runqueue refuses to copy a thread while a run of it is in flight (a superstep half "
        "written is no state to copy): copy it once the run has ended",
    ),
    "prune.keep_latest": Known(
        (422, True),
        (200, False),
        "runqueue prunes keep_latest; the reference's in-memory server (`langgraph dev`) "
        "refuses it (422), its PostgreSQL deployment does it",
    ),
}


async def patched(client: LangGraphClient, t: Transcript) -> None:
    thread = await client.threads.create(metadata={"a": 1, "n": {"x": 1}})
    tid = thread["thread_id"]
    updated = await client.threads.update(tid, metadata={"n": {"y": 2}, "b": None})
    t.note("patch.metadata", updated["metadata"])
    t.note("patch.updated_at", updated["updated_at"] > thread["updated_at"])
    t.note("patch.get", (await client.threads.get(tid))["metadata"] == updated["metadata"])
    raw = client.http.client
    response = await raw.patch(f"/threads/{tid}", json={"ttl": {"ttl": 30}})
    t.note("patch.ttl", (response.status_code, response.json()["metadata"]))
    t.note("patch.empty", (await raw.patch(f"/threads/{tid}", json={})).status_code)
    response = await raw.patch(f"/threads/{uuid.uuid4()}", json={"metadata": {}})
    t.note("patch.unknown", error_shape(response))
    response = await raw.patch(f"/threads/{tid}", json={"metadata": None})
    t.note("patch.null_metadata", error_shape(response))


async def counted(client: LangGraphClient, t: Transcript) -> None:
    marker = uuid.uuid4().hex
    for n in range(3):
        await client.threads.create(metadata={"marker": marker, "odd": n % 2 == 1})
    t.note("count.metadata", await client.threads.count(metadata={"marker": marker}))
    t.note("count.two_keys", await client.threads.count(metadata={"marker": marker, "odd": True}))
    t.note("count.status", await client.threads.count(metadata={"marker": marker}, status="idle"))
    t.note("count.none", await client.threads.count(metadata={"marker": uuid.uuid4().hex}))
    response = await client.http.client.post("/threads/count", json={"status": "sleepy"})
    t.note("count.bad_status", error_shape(response))


async def stamped(client: LangGraphClient, t: Transcript) -> None:
    tid = (await client.threads.create(metadata={"team": "a"}))["thread_id"]
    await client.runs.wait(tid, GRAPH, input={})
    metadata = (await client.threads.get(tid))["metadata"]
    t.note("run.stamps_metadata", (sorted(metadata), metadata["graph_id"], metadata["team"]))


async def copied(client: LangGraphClient, t: Transcript) -> None:
    tid = (await client.threads.create(metadata={"team": "a"}))["thread_id"]
    await client.runs.wait(tid, GRAPH, input={"ask": True})  # stops at its interrupt
    source = await client.threads.get(tid)
    copy = await client.threads.copy(tid)
    cid = copy["thread_id"]
    t.note("copy.thread", (cid != tid, copy["status"], copy["metadata"] == source["metadata"]))
    t.note("copy.runs", await client.runs.list(cid))
    state, copied_state = (
        await client.threads.get_state(tid),
        await client.threads.get_state(cid),
    )
    for key in ("values", "next", "checkpoint"):  # the checkpoint: its id, the copy's thread
        mine = copied_state[key]
        theirs = {**state[key], "thread_id": cid} if key == "checkpoint" else state[key]
        t.note(f"copy.state.{key}", mine == theirs)
    t.note("copy.state.interrupts", [i["value"] for i in copied_state["interrupts"]])
    histories = [
        [
            (s["checkpoint"]["checkpoint_id"], s["values"], s["next"])
            for s in await client.threads.get_history(x, limit=100)
        ]
        for x in (tid, cid)
    ]
    t.note("copy.history", (len(histories[0]), histories[0] == histories[1]))
    resumed = await client.runs.wait(cid, GRAPH, command={"resume": "yes"})
    t.note("copy.resumed", resumed)
    t.note("copy.source_kept", (await client.threads.get_state(tid))["next"])
    response = await client.http.client.post(f"/threads/{uuid.uuid4()}/copy")
    t.note("copy.unknown", error_shape(response))


async def copied_while_busy(client: LangGraphClient, t: Transcript) -> None:
    tid, _ = await start_busy_run(client)
    response = await client.http.client.post(f"/threads/{tid}/copy")
    t.note("copy.busy", response.status_code)
    await settle_thread(client, tid)


async def pruned(client: LangGraphClient, t: Transcript) -> None:
    raw = client.http.client
    gone, kept = [(await client.threads.create())["thread_id"] for _ in range(2)]
    for tid in (gone, kept):
        await client.runs.wait(tid, GRAPH, input={})
    result = await client.threads.prune([gone, str(uuid.uuid4())])
    t.note("prune.delete", result)
    t.note("prune.delete.get", error_shape(await raw.get(f"/threads/{gone}")))
    t.note("prune.delete.runs", error_shape(await raw.get(f"/threads/{gone}/runs")))
    before = await client.threads.get_state(kept)
    response = await raw.post(
        "/threads/prune", json={"thread_ids": [kept], "strategy": "keep_latest"}
    )
    t.note("prune.keep_latest", error_shape(response))
    after = await client.threads.get_state(kept)
    t.note(
        "prune.keep_latest.state",
        (after["values"], after["next"]) == (before["values"], before["next"]),
    )
    t.note("prune.empty", await client.threads.prune([]))
    for name, body in (
        ("missing_ids", {"strategy": "delete"}),
        ("bad_strategy", {"thread_ids": [kept], "strategy": "all"}),
        ("bad_id", {"thread_ids": ["not a thread id"]}),
    ):
        t.note(f"prune.{name}", error_shape(await raw.post("/threads/prune", json=body)))


async def transcript(client: LangGraphClient) -> list[tuple[str, Any]]:
    scenarios = [patched, counted, stamped, copied, copied_while_busy, pruned]
    parts = [Transcript() for _ in scenarios]
    await asyncio.gather(*(s(client, p) for s, p in zip(scenarios, parts, strict=True)))
    return [item for part in parts for item in part.items]


def test_thread_endpoints_answer_as_the_reference_servers_do(servers: Servers) -> None:  # noqa: F811
    assert_conformant(*transcripts(servers, transcript), KNOWN_DIFFERENCES)


# -- runqueue alone, on the same processes --------------------------------------------------
# What the reference cannot show (ownership, the ttl stored, rows in the database), and the
# PostgreSQL + Redis half of test_thread_retention.py's scenarios, on this file's runqueue
# server and worker: a second set of processes would cost the suite as much again.


@pytest.fixture(scope="module")
def bob_key(servers: Servers) -> str:  # noqa: F811
    """A second user's key: what one user may do to another's threads."""
    return create_key(servers.settings, "bob")


@pytest.fixture(scope="module")
def manager(servers: Servers) -> SyncRunManager:  # noqa: F811
    """The registry on runqueue's database and broker; the file's worker runs its runs."""
    app = create_app(servers.settings, name=f"threads-{uuid.uuid4().hex[:6]}")
    register_with_journal(app)
    return SyncRunManager(app)


def test_postgres_threads_expire_through_a_workers_maintenance_pass(manager) -> None:  # noqa: ANN001
    sweep_scenario(manager)


def test_postgres_copies_and_prunes_keep_or_cut_every_row(manager) -> None:  # noqa: ANN001
    copy_scenario(manager)


def test_postgres_keep_latest_leaves_a_delta_channel_graph_whole(manager) -> None:  # noqa: ANN001
    delta_scenario(manager)


def test_ttl_is_stored_as_given_and_refused_when_malformed(servers: Servers, manager) -> None:  # noqa: ANN001, F811
    async def scenario() -> tuple[str, str, str]:
        sdk = get_client(url=servers.runqueue, api_key=servers.api_key)
        kept = await sdk.threads.create(ttl={"strategy": "keep_latest", "ttl": 1.5})
        deleted = await sdk.threads.create(ttl=60)  # the SDK sends {"ttl": 60, "delete"}
        plain = await sdk.threads.create()
        await sdk.threads.update(plain["thread_id"], metadata={}, ttl={"ttl": 0.25})
        return kept["thread_id"], deleted["thread_id"], plain["thread_id"]

    kept, deleted, patched = asyncio.run(scenario())
    assert [manager.get_thread(t).thread.ttl for t in (kept, deleted, patched)] == [
        ThreadTtl(PruneStrategy.keep_latest, 1.5),
        ThreadTtl(PruneStrategy.delete, 60.0),
        ThreadTtl(PruneStrategy.delete, 0.25),
    ]
    with httpx.Client(base_url=servers.runqueue, headers=key(servers.api_key)) as http:
        for ttl in ({"ttl": "soon"}, {"ttl": -1}, {"ttl": 1, "strategy": "x"}, {"when": 2}, 5):
            for method, path in (("POST", "/threads"), ("PATCH", f"/threads/{patched}")):
                response = http.request(method, path, json={"ttl": ttl})
                assert response.status_code == 422 and "detail" in response.json(), ttl
    assert manager.get_thread(patched).thread.ttl == ThreadTtl(PruneStrategy.delete, 0.25)


def key(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key}


def test_another_users_thread_is_no_thread_to_patch_copy_count_or_prune(
    servers: Servers,  # noqa: F811
    bob_key: str,
    manager,  # noqa: ANN001
) -> None:
    marker = uuid.uuid4().hex
    with (
        httpx.Client(base_url=servers.runqueue, headers=key(servers.api_key)) as alice,
        httpx.Client(base_url=servers.runqueue, headers=key(bob_key)) as bob,
    ):
        tid = alice.post("/threads", json={"metadata": {"marker": marker}}).json()["thread_id"]
        assert bob.patch(f"/threads/{tid}", json={"metadata": {"x": 1}}).status_code == 404
        assert bob.post(f"/threads/{tid}/copy").status_code == 404
        assert bob.post("/threads/count", json={"metadata": {"marker": marker}}).json() == 0
        assert alice.post("/threads/count", json={"metadata": {"marker": marker}}).json() == 1
        pruned = bob.post("/threads/prune", json={"thread_ids": [tid]})
        assert pruned.json() == {"pruned_count": 0}
        assert alice.get(f"/threads/{tid}").json()["metadata"] == {"marker": marker}
        unknown_field = alice.post(f"/threads/{tid}/copy", json={"foo": 1})  # as every body's
        assert unknown_field.status_code == 422 and "foo" in unknown_field.text
        assert alice.post(f"/threads/{tid}/copy", json={}).status_code == 200
    copy = manager.copy_thread(tid, user_id="alice")  # the library names the user itself
    assert manager.get_thread(copy.thread_id, user_id="alice") is not None
    assert manager.prune_threads([tid, copy.thread_id], user_id="bob") == 0


def test_a_plain_assistants_copy_owes_its_source_nothing(servers: Servers) -> None:  # noqa: F811
    with httpx.Client(base_url=servers.runqueue, headers=key(servers.api_key), timeout=60) as http:
        tid = http.post("/threads", json={}).json()["thread_id"]
        for n in (1, 2):
            body = {"assistant_id": "echo", "input": {"n": n}}
            assert http.post(f"/threads/{tid}/runs/wait", json=body).status_code == 200
        cid = http.post(f"/threads/{tid}/copy").json()["thread_id"]
        assert http.delete(f"/threads/{tid}").status_code == 204
        state = http.get(f"/threads/{cid}/state").json()
        assert state["values"] == {"turns": 2, "last": {"n": 2}}
        body = {"assistant_id": "echo", "input": {"n": 3}}  # on from the copied state
        assert http.post(f"/threads/{cid}/runs/wait", json=body).json()["turn"] == 3


def test_prune_leaves_a_thread_with_a_run_in_flight_as_it_is(servers: Servers) -> None:  # noqa: F811
    with httpx.Client(base_url=servers.runqueue, headers=key(servers.api_key), timeout=60) as http:
        tid = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "steps", "input": {"steps": 100, "delay": 0.05}}
        run = http.post(f"/threads/{tid}/runs", json=body).json()
        for strategy in ("delete", "keep_latest"):
            body = {"thread_ids": [tid], "strategy": strategy}
            assert http.post("/threads/prune", json=body).json() == {"pruned_count": 0}
        status = http.get(f"/threads/{tid}/runs/{run['run_id']}").json()["status"]
        assert status in ("pending", "running")
        http.post(f"/threads/{tid}/runs/{run['run_id']}/cancel")

"""Assistants with versions through the official langgraph-sdk, against a real `runqueue
serve` and a prefork worker on PostgreSQL + Redis: a version's config reaches the run (the
graph's own output says so), versions roll back, users own their assistants, and deleting an
assistant lets its runs in flight finish on the config they were created with."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from runqueue import RunRequest, Settings, SyncRunManager, create_app
from runqueue.registry.assistants import default_assistant_id
from tests.api_support import ServerProcess

pytestmark = pytest.mark.integration

OPTIONS = "options"  # tests/option_graphs.py: writes the runtime context it got (seen_context)
AGENT = "agent"  # tests/api_graphs.py: `seconds` keeps a run busy


def client(server: ServerProcess, key: str):  # noqa: ANN201
    return get_client(url=server.url, api_key=key)


def test_a_run_uses_the_active_version_after_a_rollback(server, keys) -> None:  # noqa: ANN001
    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        made = await sdk.assistants.create(
            OPTIONS, config={"configurable": {"tone": "v1"}}, name="toned"
        )
        aid = made["assistant_id"]
        assert (made["version"], made["context"]) == (1, {"tone": "v1"})
        for tone in ("v2", "v3"):
            patched = await sdk.assistants.update(aid, config={"configurable": {"tone": tone}})
        assert (patched["version"], patched["config"]["configurable"]) == (3, {"tone": "v3"})
        versions = await sdk.assistants.get_versions(aid)
        assert [v["version"] for v in versions] == [3, 2, 1]
        assert [v["config"]["configurable"]["tone"] for v in versions] == ["v3", "v2", "v1"]

        latest = await sdk.assistants.set_latest(aid, 1)
        assert (latest["version"], latest["context"]) == (1, {"tone": "v1"})
        assert (await sdk.assistants.get(aid))["version"] == 1

        thread = await sdk.threads.create()
        result = await sdk.runs.wait(thread["thread_id"], aid, input={})
        assert result["seen_context"] == {"user": "nobody", "tone": "v1"}  # the graph's output
        run = (await sdk.runs.list(thread["thread_id"]))[0]
        recorded = run["kwargs"]["config"]["metadata"]
        assert (recorded["assistant_id"], recorded["assistant_version"]) == (aid, 1)
        assert run["assistant_id"] == OPTIONS  # the graph it ran: the thread's state reads it
        state = await sdk.threads.get_state(thread["thread_id"])
        assert state["values"]["seen_context"]["tone"] == "v1"

        # The run's own context wins over the assistant's, key by key.
        result = await sdk.runs.wait(None, aid, input={}, context={"user": "ann"})
        assert result["seen_context"] == {"user": "ann", "tone": "v1"}

    asyncio.run(scenario())


def test_default_assistants_are_the_reference_ids_and_read_only(server, keys) -> None:  # noqa: ANN001
    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        default = default_assistant_id(AGENT)
        got = await sdk.assistants.get(default)
        assert (got["graph_id"], got["metadata"], got["version"]) == (
            AGENT,
            {"created_by": "system"},
            1,
        )
        assert (await sdk.assistants.get(AGENT))["assistant_id"] == default  # the name works
        result = await sdk.runs.wait(None, default, input={})
        assert result["steps"] == ["work", "review", "respond"]
        with pytest.raises(ConflictError):
            await sdk.assistants.update(default, name="mine now")
        with pytest.raises(ConflictError):
            await sdk.assistants.delete(default)
        assert [v["version"] for v in await sdk.assistants.get_versions(AGENT)] == [1]

    asyncio.run(scenario())


def test_a_user_sees_and_changes_only_its_own_assistants(server, keys) -> None:  # noqa: ANN001
    async def scenario() -> None:
        alice, bob = client(server, keys["alice"]), client(server, keys["bob"])
        marker = uuid.uuid4().hex
        made = await alice.assistants.create(AGENT, metadata={"marker": marker})
        aid = made["assistant_id"]
        found = await alice.assistants.search(metadata={"marker": marker})
        assert [a["assistant_id"] for a in found] == [aid]
        assert await bob.assistants.search(metadata={"marker": marker}) == []
        assert await bob.assistants.count(metadata={"marker": marker}) == 0
        for call in (
            bob.assistants.get(aid),
            bob.assistants.update(aid, name="bob's"),
            bob.assistants.delete(aid),
            bob.assistants.get_versions(aid),
            bob.assistants.set_latest(aid, 1),
        ):
            with pytest.raises(NotFoundError):
                await call
        with pytest.raises(NotFoundError):  # and no run of bob's on it
            await bob.runs.create(None, aid, input={})
        with pytest.raises(ConflictError):  # nor its id taken over
            await bob.assistants.create(AGENT, assistant_id=aid, if_exists="do_nothing")
        assert (await alice.assistants.get(aid))["name"] == "Untitled"
        # The defaults are every user's.
        assert await bob.assistants.count(graph_id=AGENT) == 1

    asyncio.run(scenario())


def test_deleting_an_assistant_lets_its_run_in_flight_finish(server, keys) -> None:  # noqa: ANN001
    """The documented rule (docs/api.md): DELETE answers 204 at once; a run in flight (or
    queued) keeps the config it was created with and finishes on it."""

    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        made = await sdk.assistants.create(OPTIONS, context={"tone": "doomed"})
        aid = made["assistant_id"]
        busy = await sdk.assistants.create(AGENT)
        thread = await sdk.threads.create()
        tid = thread["thread_id"]
        first = await sdk.runs.create(tid, busy["assistant_id"], input={"seconds": 2})
        second = await sdk.runs.create(tid, aid, input={}, multitask_strategy="enqueue")
        await sdk.assistants.delete(aid)
        await sdk.assistants.delete(busy["assistant_id"])
        with pytest.raises(NotFoundError):
            await sdk.assistants.get(aid)
        assert (await sdk.runs.join(tid, first["run_id"]))["steps"][-1] == "respond"
        joined = await sdk.runs.join(tid, second["run_id"])
        assert joined["seen_context"]["tone"] == "doomed"
        assert (await sdk.runs.get(tid, second["run_id"]))["status"] == "success"
        with pytest.raises(NotFoundError):  # a new run on it is refused
            await sdk.runs.create(tid, aid, input={})

    asyncio.run(scenario())


def test_the_python_api_runs_a_stored_assistant(tmp_path) -> None:
    """Embedded (SQLite in-process): the registry creates, patches, rolls back and merges the
    version's config into the run's kwargs, as the HTTP API does."""
    from runqueue.langgraph import langgraph_assistant
    from runqueue.store.database import migrate

    settings = Settings(data_dir=tmp_path)
    app = create_app(settings)

    def options():  # noqa: ANN202
        from tests.option_graphs import options

        return options

    langgraph_assistant(app, OPTIONS, options)
    migrate(settings)
    manager = SyncRunManager(app)
    made = manager.create_assistant(OPTIONS, context={"tone": "v1"})
    manager.patch_assistant(made.assistant_id, context={"tone": "v2"}, metadata={"k": 1})
    assert manager.get_assistant(made.assistant_id).version == 2
    manager.set_assistant_version(made.assistant_id, 1)
    run = manager.create("t-1", made.assistant_id, kwargs={"input": {}})
    assert run.assistant_id == OPTIONS
    assert run.kwargs["context"] == {"tone": "v1"}
    assert run.kwargs["config"]["configurable"] == {"tone": "v1"}
    assert run.kwargs["config"]["metadata"]["assistant_version"] == 1
    # A cron on the stored assistant: its fired runs get the version active at its creation.
    cron = manager.create_cron(made.assistant_id, schedule="0 0 1 1 *", kwargs={"input": {}})
    assert cron.assistant_id == OPTIONS and cron.kwargs["context"] == {"tone": "v1"}
    assert cron.kwargs["config"]["metadata"]["assistant_id"] == made.assistant_id
    by_default_id = RunRequest("t-2", default_assistant_id(OPTIONS), kwargs={"input": {}})
    (created,) = manager.create_many([by_default_id])  # a default's id names its graph
    assert created.assistant_id == OPTIONS and "metadata" not in (
        created.kwargs.get("config") or {}
    )
    found = manager.search_assistants(metadata={"k": 1})
    assert [a.version for a in found] == []  # version 1 is active: its metadata has no k
    assert manager.count_assistants(graph_id=OPTIONS) == 2  # the default and this one
    manager.delete_assistant(made.assistant_id)
    assert manager.count_assistants(graph_id=OPTIONS) == 1


def test_a_thread_naming_an_assistant_by_id_keeps_resolving(server, keys) -> None:  # noqa: ANN001
    """A thread with no run whose metadata names a default's id or a stored assistant's (as
    the reference stamps it) is read and updated with that assistant's graph."""

    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        made = await sdk.assistants.create(AGENT)
        for named in (default_assistant_id(AGENT), made["assistant_id"]):
            thread = await sdk.threads.create(metadata={"assistant_id": named})
            tid = thread["thread_id"]
            await sdk.threads.update_state(tid, {"steps": ["typed"]}, as_node="work")
            state = await sdk.threads.get_state(tid)
            assert (state["values"]["steps"], state["next"]) == (["typed"], ["review"])

    asyncio.run(scenario())


def test_text_a_database_cannot_store_is_refused(server, keys) -> None:  # noqa: ANN001
    async def scenario() -> None:
        raw = client(server, keys["alice"]).http.client
        for path, body in (
            ("/assistants/count", {"metadata": {"\u0000": 1}}),
            ("/assistants/search", {"name": "a\u0000"}),
            ("/assistants", {"graph_id": AGENT, "name": "a\u0000"}),
            ("/assistants", {"graph_id": AGENT, "metadata": {"k": "\u0000"}}),
        ):
            response = await raw.post(path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert "NUL" in response.json()["detail"]

    asyncio.run(scenario())


def test_concurrent_patches_each_make_a_version(server, keys) -> None:  # noqa: ANN001
    """Twelve PATCHes at once: twelve versions, numbered 2..13 with none lost or doubled
    (the assistant's row is locked while a version is numbered)."""

    async def scenario() -> None:
        sdk = client(server, keys["alice"])
        aid = (await sdk.assistants.create(OPTIONS))["assistant_id"]
        patched = await asyncio.gather(
            *(sdk.assistants.update(aid, context={"tone": f"t{n}"}) for n in range(12))
        )
        assert sorted(p["version"] for p in patched) == list(range(2, 14))
        versions = await sdk.assistants.get_versions(aid, limit=100)
        assert [v["version"] for v in versions] == list(range(13, 0, -1))
        newest = next(p for p in patched if p["version"] == 13)
        assert (await sdk.assistants.get(aid))["context"] == newest["context"]

    asyncio.run(scenario())

"""The Store (issue 29, part 1) through the official Python client (langgraph-sdk), against a
real `runqueue serve` and a real prefork worker, on both backends: LangGraph's SqliteStore
(embedded) and PostgresStore (PostgreSQL + Redis).

- a graph remembers a user's preference in one thread and reads it in another;
- one user never reads, searches or lists another's items, nor does a graph run by them;
- an item's ttl runs out and the maintenance pass deletes it within one pass; a read
  refreshes the ttl;
- semantic search with a deterministic fake embedding answers the nearest item first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from sqlalchemy import text

from runqueue import create_app
from runqueue.registry.store_items import StoreItems
from runqueue.store import RunStore
from tests.api_support import API_APP, ServerProcess, api_server
from tests.conftest import require_services
from tests.integration.conftest import create_key
from tests.support import Backend, WorkerProcess, as_process, make_backend, settings_env

pytestmark = pytest.mark.integration

MEMORY = "memory"  # tests/store_graphs.py
MAINTENANCE_INTERVAL = 0.5  # seconds: make_backend's, the pass the ttl test measures against


@pytest.fixture(scope="module", params=["embedded", "postgres_redis"])
def store_backend(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Backend]:  # noqa: ANN001
    if request.param != "embedded":
        require_services()
    backend = make_backend(request.param, tmp_path_factory.mktemp("store"), app=API_APP)
    assert backend.settings.maintenance_interval == MAINTENANCE_INTERVAL
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def store_server(store_backend: Backend, tmp_path_factory) -> Iterator[ServerProcess]:  # noqa: ANN001
    folder = Path(tmp_path_factory.mktemp("store-processes"))
    worker = WorkerProcess(store_backend.settings, folder / "worker.log", concurrency=2).start()
    server = api_server(store_backend.settings, folder / "api.log").start()
    yield server
    server.stop()
    worker.stop()


@pytest.fixture(scope="module")
def users(store_backend: Backend) -> dict[str, str]:
    return {name: create_key(store_backend, name) for name in ("alice", "bob")}


def run_memory(server: ServerProcess, key: str, graph_input: dict[str, Any]) -> dict[str, Any]:
    """One run of the memory graph on a thread of its own: its values."""

    async def run() -> dict[str, Any]:
        sdk = get_client(url=server.url, api_key=key)
        thread = await sdk.threads.create()
        return await sdk.runs.wait(thread["thread_id"], MEMORY, input=graph_input)

    return asyncio.run(run())


def test_a_graph_remembers_a_preference_across_threads(store_server, users) -> None:  # noqa: ANN001
    first = run_memory(store_server, users["alice"], {"remember": "green"})
    assert first["color"] == "green" and first["confirmed"] is True
    # Another thread of the same user: the store, not the thread, remembers.
    second = run_memory(store_server, users["alice"], {})
    assert second["color"] == "green" and second["confirmed"] is True
    # Bob's graph runs in Bob's namespaces: Alice's preference is not there.
    assert run_memory(store_server, users["bob"], {})["color"] is None

    async def read() -> tuple[Any, Any]:
        alice = get_client(url=store_server.url, api_key=users["alice"])
        bob = get_client(url=store_server.url, api_key=users["bob"])
        return (
            await alice.store.get_item(["preferences"], "color"),
            await bob.store.get_item(["preferences"], "color"),
        )

    alices, bobs = asyncio.run(read())
    assert alices["value"] == {"color": "green"} and alices["namespace"] == ["preferences"]
    assert bobs is None


def test_one_user_never_sees_another_users_items(store_server, users) -> None:  # noqa: ANN001
    marker = uuid.uuid4().hex[:8]
    namespace = ["isolation", marker]

    async def scenario() -> None:
        alice = get_client(url=store_server.url, api_key=users["alice"])
        bob = get_client(url=store_server.url, api_key=users["bob"])
        await alice.store.put_item(namespace, "k", {"owner": "alice"})
        assert (await alice.store.get_item(namespace, "k"))["value"] == {"owner": "alice"}
        assert await bob.store.get_item(namespace, "k") is None
        assert (await bob.store.search_items(["isolation"]))["items"] == []
        listed = await bob.store.list_namespaces(prefix=["isolation"])
        assert listed["namespaces"] == []
        # Bob's item at the same namespace and key is his own; deleting it leaves Alice's.
        await bob.store.put_item(namespace, "k", {"owner": "bob"})
        assert (await bob.store.get_item(namespace, "k"))["value"] == {"owner": "bob"}
        assert (await alice.store.get_item(namespace, "k"))["value"] == {"owner": "alice"}
        await bob.store.delete_item(namespace, "k")
        assert await bob.store.get_item(namespace, "k") is None
        assert (await alice.store.get_item(namespace, "k"))["value"] == {"owner": "alice"}
        found = await alice.store.search_items(["isolation"], filter={"owner": "alice"})
        assert [(i["namespace"], i["value"]) for i in found["items"]] == [
            (namespace, {"owner": "alice"})
        ]
        listed = await alice.store.list_namespaces(prefix=["isolation"])
        assert listed["namespaces"] == [namespace]

    asyncio.run(scenario())


def _row_present(store: RunStore, key: str) -> bool:
    with store.engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM store WHERE key = :k"), {"k": key}).first()
    return found is not None


def _gone_after(store: RunStore, key: str, expires: float, limit: float) -> float:
    """Seconds from `expires` (monotonic) until the item's row is gone."""
    while _row_present(store, key):
        assert time.monotonic() < expires + limit, f"item {key} still there {limit} s after expiry"
        time.sleep(0.05)
    return time.monotonic() - expires


def test_an_expired_item_is_swept_within_one_maintenance_pass(
    store_backend,
    store_server,
    users,  # noqa: ANN001
) -> None:
    store = RunStore(store_backend.settings.database_url)
    ttl_seconds = 2.0
    key, kept = f"ttl-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"

    async def put(item_key: str, seconds: float) -> float:
        sdk = get_client(url=store_server.url, api_key=users["alice"])
        await sdk.store.put_item(["ttl"], item_key, {"v": 1}, ttl=seconds / 60)
        return time.monotonic() + seconds

    expires = asyncio.run(put(key, ttl_seconds))
    # SQLite's store keeps expires_at to the second: the sweep may see it up to 1 s late.
    slack = 1.0 if store_backend.name == "embedded" else 0.25
    took = _gone_after(store, key, expires, MAINTENANCE_INTERVAL + slack + 1.0)
    print(f"FIGURE store ttl ({store_backend.name}): swept {took:.2f} s after expiry")
    assert took <= MAINTENANCE_INTERVAL + slack + 0.5

    # A read refreshes the ttl (refresh_on_read): the item's expiry moves on by the read's
    # distance from the put. (PostgresStore keeps ttl_minutes as an integer, so a refresh
    # there is in whole minutes: hence a ttl of one minute here.)
    asyncio.run(put(kept, 60.0))
    before = _expires_at(store, kept)
    time.sleep(1.5)  # SQLite's refresh is to the second

    async def read() -> None:
        sdk = get_client(url=store_server.url, api_key=users["alice"])
        assert (await sdk.store.get_item(["ttl"], kept))["value"] == {"v": 1}

    asyncio.run(read())
    moved = (_expires_at(store, kept) - before).total_seconds()
    assert 0.4 <= moved <= 3.0, f"a read moved the item's expiry by {moved} s"


def _expires_at(store: RunStore, key: str) -> datetime:
    with store.engine.connect() as conn:
        value = conn.execute(
            text("SELECT expires_at FROM store WHERE key = :k"), {"k": key}
        ).scalar_one()
    if isinstance(value, str):  # SQLite: text, as the store wrote it
        value = datetime.fromisoformat(value)
    return (
        value.replace(tzinfo=None)
        if value.tzinfo is None
        else value.astimezone(UTC).replace(tzinfo=None)
    )


def _can_search_by_meaning(backend: Backend) -> str | None:
    """Why this backend cannot run the official store's vector search here, or None."""
    if backend.name == "embedded":
        if not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
            return "this Python's sqlite3 cannot load extensions (sqlite-vec)"
        return None
    with RunStore(backend.settings.database_url).engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
    return None if found else "PostgreSQL has no pgvector (`vector` extension) installed"


def test_semantic_search_answers_the_nearest_item_first(store_backend) -> None:  # noqa: ANN001
    missing = _can_search_by_meaning(store_backend)
    if missing and store_backend.name == "embedded":
        # The README's test command makes the venv with a Python that can (.ci/python).
        pytest.fail(f"{missing}: make the venv with the Python `sh .ci/python` names")
    if missing:  # Debian 12 packages no pgvector for PostgreSQL 15 (docs/operations.md)
        pytest.skip(missing)
    settings = store_backend.settings.with_overrides(
        store_embed="tests.fake_embedding:embed", store_embed_dims=16, store_embed_fields="text"
    )
    items = StoreItems(create_app(settings, name=f"store-search-{uuid.uuid4().hex[:6]}"))
    namespace = ["docs", uuid.uuid4().hex[:8]]
    for key, words in [("fruit", "green apple"), ("sea", "blue ocean"), ("road", "fast car")]:
        items.put(namespace, key, {"text": words}, user_id="alice")
    found = items.search(namespace, query="ocean", user_id="alice")
    assert [item.key for item in found][0] == "sea"
    assert found[0].score is not None and found[0].score >= max(i.score or 0 for i in found)
    assert items.search(namespace, query="ocean", user_id="bob") == []


def runqueue_cli(backend: Backend, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_process(["runqueue", *arguments]),
        env=settings_env(backend.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_line_lists_namespaces_and_items(store_backend, store_server, users) -> None:  # noqa: ANN001
    async def put() -> None:
        sdk = get_client(url=store_server.url, api_key=users["alice"])
        await sdk.store.put_item(["cli", "x"], "k", {"v": 1})

    asyncio.run(put())
    listed = runqueue_cli(
        store_backend, "store", "namespaces", "--user", "alice", "--prefix", "cli"
    )
    assert (listed.returncode, listed.stdout) == (0, "cli.x\n")
    # Without --user, the store as it is: Alice's namespace under her prefix.
    listed = runqueue_cli(store_backend, "store", "namespaces", "--prefix", "users.alice.cli")
    assert (listed.returncode, listed.stdout) == (0, "users.alice.cli.x\n")
    shown = runqueue_cli(store_backend, "store", "items", "cli", "--user", "alice")
    assert (shown.returncode, shown.stdout) == (0, 'cli.x  k  {"v": 1}\n')
    assert runqueue_cli(store_backend, "store", "items", "cli", "--user", "bob").stdout == ""
    refused = runqueue_cli(store_backend, "store", "items", "a..b")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: namespace label '' must be a non-empty string without periods (nor NUL "
        "characters or lone surrogates)"
    ]

"""One user's view of the Store (runqueue.langgraph.owned_store), over LangGraph's own
InMemoryStore: what a user puts lands under their prefix, and nothing of another user's is
read, searched or listed; the Store API's input checks (runqueue.registry.store_items)."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.store.memory import InMemoryStore

from runqueue.errors import EmptyNamespaceError, InvalidNamespaceError, SettingsError
from runqueue.langgraph.owned_store import OwnedStore, owner_prefix
from runqueue.registry.store_items import namespace_of
from runqueue.settings import Settings


def views() -> tuple[InMemoryStore, OwnedStore, OwnedStore, OwnedStore]:
    inner = InMemoryStore()
    return (
        inner,
        OwnedStore(inner, lambda: "alice"),
        OwnedStore(inner, lambda: "bob.b"),
        OwnedStore(inner, lambda: None),
    )


def test_each_user_reads_and_writes_under_their_own_prefix() -> None:
    inner, alice, bob, everyone = views()
    alice.put(("prefs",), "color", {"v": "green"})
    bob.put(("prefs",), "color", {"v": "red"})
    assert alice.get(("prefs",), "color").value == {"v": "green"}
    assert alice.get(("prefs",), "color").namespace == ("prefs",)
    assert bob.get(("prefs",), "color").value == {"v": "red"}
    assert inner.get(("users", "alice", "prefs"), "color").value == {"v": "green"}
    assert inner.get(("users", "bob%2Eb", "prefs"), "color").value == {"v": "red"}
    bob.delete(("prefs",), "color")
    assert bob.get(("prefs",), "color") is None
    assert alice.get(("prefs",), "color").value == {"v": "green"}
    # No user (API keys off): the store as it is, every user's prefix in sight. (The
    # in-memory store keeps listing a namespace emptied by a delete: bob's.)
    assert everyone.list_namespaces() == [
        ("users", "alice", "prefs"),
        ("users", "bob%2Eb", "prefs"),
    ]


def test_search_and_listings_never_show_another_users_items() -> None:
    _, alice, bob, _ = views()
    alice.put(("notes", "a"), "1", {"tag": "x"})
    alice.put(("notes", "b"), "2", {"tag": "y"})
    bob.put(("notes", "c"), "3", {"tag": "x"})
    assert sorted(i.key for i in alice.search(("notes",))) == ["1", "2"]
    assert [i.key for i in alice.search((), filter={"tag": "x"})] == ["1"]
    assert [i.namespace for i in bob.search(())] == [("notes", "c")]
    assert sorted(alice.list_namespaces()) == [("notes", "a"), ("notes", "b")]
    assert alice.list_namespaces(max_depth=1) == [("notes",)]
    assert alice.list_namespaces(prefix=("notes",), suffix=("b",)) == [("notes", "b")]
    assert bob.list_namespaces(suffix=("a",)) == []


def test_the_async_api_is_the_same_view() -> None:
    _, alice, bob, _ = views()

    async def scenario() -> None:
        await alice.aput(("prefs",), "k", {"v": 1})
        assert await bob.alist_namespaces() == []
        assert (await alice.aget(("prefs",), "k")).namespace == ("prefs",)
        assert await bob.aget(("prefs",), "k") is None
        assert [i.key for i in await alice.asearch(("prefs",))] == ["k"]
        assert await bob.asearch(("prefs",)) == []

    asyncio.run(scenario())


def test_the_owner_is_asked_once_at_the_first_operation() -> None:
    asked = []
    view = OwnedStore(InMemoryStore(), lambda: asked.append(1) or "carol")
    assert asked == []
    view.put(("a",), "k", {})
    view.get(("a",), "k")
    assert asked == [1]
    assert owner_prefix(None) == () and owner_prefix("x%.y") == ("users", "x%25%2Ey")


@pytest.mark.parametrize("bad", [["a.b"], [""], [1], "a", None])
def test_a_namespace_label_is_a_non_empty_string_without_periods(bad) -> None:  # noqa: ANN001
    with pytest.raises(InvalidNamespaceError):
        namespace_of(bad)


def test_an_item_needs_a_namespace() -> None:
    assert namespace_of(["a", "b"]) == ("a", "b")
    assert namespace_of([]) == ()
    with pytest.raises(EmptyNamespaceError) as refused:
        namespace_of([], allow_empty=False)
    assert refused.value.http_status == 400


def test_store_embed_names_a_function_and_its_dims() -> None:
    settings = Settings.from_env(
        {"RUNQUEUE_STORE_EMBED": "tests.fake_embedding:embed", "RUNQUEUE_STORE_EMBED_DIMS": "16"}
    )
    assert (settings.store_embed, settings.store_embed_dims) == ("tests.fake_embedding:embed", 16)
    with pytest.raises(SettingsError, match="store_embed_dims"):
        Settings.from_env({"RUNQUEUE_STORE_EMBED": "tests.fake_embedding:embed"})
    with pytest.raises(SettingsError, match="module:function"):
        Settings.from_env({"RUNQUEUE_STORE_EMBED": "nocolon", "RUNQUEUE_STORE_EMBED_DIMS": "4"})


def test_index_config_loads_the_embedding_function() -> None:
    from runqueue.langgraph.item_store import index_config

    assert index_config(Settings()) is None
    config = index_config(Settings(store_embed="tests.fake_embedding:embed", store_embed_dims=16))
    assert config["dims"] == 16 and config["fields"] == ["$"]
    assert len(config["embed"](["blue ocean"])[0]) == 16
    with pytest.raises(SettingsError, match="store_embed"):
        index_config(Settings(store_embed="tests.fake_embedding:nothing", store_embed_dims=4))

"""Assistants without services: the default's id is the reference's, and a run's kwargs are
merged with its assistant's version as the reference merges them."""

from __future__ import annotations

import importlib.util
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from runqueue.records import AssistantRecord
from runqueue.registry.assistants import default_assistant_id, with_assistant


def test_the_default_assistant_id_is_uuid5_in_the_reference_namespace():
    """Read from langgraph_api's source (importing it needs the server's environment)."""
    source = Path(importlib.util.find_spec("langgraph_api").origin).parent / "graph.py"
    found = re.search(r'NAMESPACE_GRAPH = UUID\("([0-9a-f-]+)"\)', source.read_text())
    assert found is not None
    assert default_assistant_id("agent") == str(uuid.uuid5(uuid.UUID(found.group(1)), "agent"))


def assistant(**fields) -> AssistantRecord:  # noqa: ANN003
    now = datetime.now(UTC)
    values = dict(
        assistant_id=str(uuid.uuid4()),
        graph_id="g",
        name="a",
        description=None,
        config={},
        context={},
        metadata={},
        version=3,
        created_at=now,
        updated_at=now,
    )
    return AssistantRecord(**(values | fields))


def test_the_run_s_config_and_context_win_key_by_key():
    a = assistant(
        config={"configurable": {"tone": "a", "model": "m"}, "recursion_limit": 5, "tags": ["x"]},
        context={"tone": "a", "model": "m"},
    )
    kwargs = {
        "input": {},
        "config": {"configurable": {"tone": "run"}, "tags": ["y"], "metadata": {"mine": 1}},
        "context": {"tone": "run"},
    }
    merged = with_assistant(a, kwargs)
    assert merged["input"] == {}
    assert merged["config"]["configurable"] == {"tone": "run", "model": "m"}
    assert merged["context"] == {"tone": "run", "model": "m"}
    assert merged["config"]["recursion_limit"] == 5 and merged["config"]["tags"] == ["y"]
    assert merged["config"]["metadata"] == {
        "mine": 1,
        "assistant_id": a.assistant_id,
        "assistant_version": 3,
    }
    assert kwargs["config"]["metadata"] == {"mine": 1}  # the caller's dict is not changed


def test_a_run_without_config_gets_the_assistant_s():
    a = assistant(config={"configurable": {"tone": "a"}}, context={"tone": "a"})
    merged = with_assistant(a, {})
    assert merged["config"]["configurable"] == {"tone": "a"} and merged["context"] == {"tone": "a"}
    bare = with_assistant(assistant(), {"input": {"q": 1}})
    assert "context" not in bare and "configurable" not in bare["config"]

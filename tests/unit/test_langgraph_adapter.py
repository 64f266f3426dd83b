"""The LangGraph adapter's pure parts: stream chunks as events, graph values as JSON, the
run's kwargs checked; and runqueue without the extra installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.types import Interrupt

from runqueue import InvalidPayloadError
from runqueue.langgraph.events import event_data, event_name, jsonable, stream_modes
from tests.support import REPO_ROOT


def test_event_names_are_langgraphs_stream_modes_with_subgraph_namespaces():
    assert event_name("values", ()) == "values"
    assert event_name("updates", ("parent:1a2b", "child:3c4d")) == "updates|parent:1a2b|child:3c4d"


def test_event_names_stay_valid_stream_event_names():
    assert event_name("updates", ("research agent:1a", "x:2")) == "updates|research%20agent:1a|x:2"
    deep = tuple(f"level{n}:{'f' * 36}" for n in range(8))
    name = event_name("values", deep)
    assert len(name) <= 200 and name.startswith("values|...|") and name.endswith(deep[-1])


def test_a_messages_chunk_is_a_pair_of_message_and_metadata():
    chunk = AIMessageChunk(content="Hel", id="m1")
    data = event_data("messages", (chunk, {"langgraph_node": "respond", "tags": ("a",)}))
    assert data[0]["content"] == "Hel" and data[0]["type"] == "AIMessageChunk"
    assert data[1] == {"langgraph_node": "respond", "tags": ["a"]}
    json.dumps(data)  # JSON as it is


def test_graph_values_become_json():
    value = {
        "messages": [HumanMessage("hi", id="h1")],
        "__interrupt__": (Interrupt(value={"question": "ok?"}, id="i1"),),
        "seen": {1},
    }
    assert jsonable(value)["__interrupt__"] == [
        {"value": {"question": "ok?"}, "id": "i1", "response_schema": None}
    ]
    assert jsonable(value)["messages"][0]["content"] == "hi"
    assert jsonable(value)["seen"] == [1]


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, ["values"]), ("updates", ["updates"]), (["messages", "custom", "messages"],
     ["messages", "custom"])],
)  # fmt: skip
def test_stream_modes(given, expected):
    assert stream_modes(given) == expected


@pytest.mark.parametrize("given", ["bogus", ["values", "tools"], [], 3])
def test_unknown_stream_modes_are_refused(given):
    with pytest.raises(InvalidPayloadError):
        stream_modes(given)


def test_runqueue_imports_and_runs_without_the_langgraph_extra(tmp_path):
    """With LangGraph unimportable, runqueue and its plain assistants work, and only
    langgraph_assistant fails, naming the extra."""
    script = """
import sys
for name in ("langgraph", "langchain_core"):
    sys.modules[name] = None  # as if not installed
import runqueue
from runqueue import assistant, create_app, Settings
app = create_app(Settings(data_dir=sys.argv[1]))
assistant(app, name="plain")(lambda context: None)
assert not [m for m in sys.modules if m.startswith("runqueue.langgraph") and sys.modules[m]]
try:
    runqueue.langgraph_assistant
except runqueue.ExtraNotInstalledError as error:
    assert isinstance(error, ImportError)
    print(error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'runqueue[langgraph]'" in done.stdout


def test_which_factories_are_built_for_each_run():
    """As the Agent Server calls them: a factory of the run's config, an async one and one
    giving a context manager are called for every run; a plain one once per process."""
    import contextlib

    from runqueue.langgraph.factories import builds_per_run

    def plain():
        return None

    def of_config(config):
        return None

    async def asynchronous():
        return None

    @contextlib.contextmanager
    def managed():
        yield None

    @contextlib.asynccontextmanager
    async def managed_async():
        yield None

    assert not builds_per_run(plain)
    assert all(builds_per_run(f) for f in (of_config, asynchronous, managed, managed_async))

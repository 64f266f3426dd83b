"""A run's kwargs checked against its assistant when the run is created (issue 25, item 5),
on both backends, without a worker: a plain assistant's against its function's signature,
a graph's `input` against its input schema. A misfit is InvalidKwargsError naming the
field, from the library, create_many() and `runqueue submit` (one line, exit 1), and
nothing is written: no run, no thread made by if_not_exists. Fitting kwargs (defaults left
out, **kwargs, a graph's partial state, no input) still create their run."""

from __future__ import annotations

import json
import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from runqueue import InvalidKwargsError, InvalidPayloadError, RunContext, RunRequest, assistant
from runqueue.langgraph import langgraph_assistant
from tests.support import row_counts, settings_env
from tests.support import run_cli as runqueue

pytestmark = pytest.mark.integration


class Notes(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]


class Question(TypedDict):
    topic: str


def _write(state: Notes) -> dict[str, Any]:
    return {"notes": [f"on {state.get('topic')}"]}


def _graph(input_schema: Any = None) -> Any:
    builder = StateGraph(Notes, input_schema=input_schema) if input_schema else StateGraph(Notes)
    return builder.add_node("write", _write).add_edge(START, "write").add_edge("write", END)


def _tally() -> Any:
    """A graph whose state is a list, not an object (LangGraph's `__root__` channel)."""
    builder = StateGraph(Annotated[list, operator.add]).add_node("count", lambda state: [1])
    return builder.add_edge(START, "count").add_edge("count", END)


def chat(context: RunContext, message: str, *, tone: str = "plain") -> dict[str, Any]:
    """An assistant with a required argument, as the README's `chat`."""
    return {"reply": message, "tone": tone}


@pytest.fixture(scope="module")
def checked(backend):  # noqa: ANN001, ANN201
    """A manager whose app also registers `chat` and two graphs of its own: `notes` (input:
    its whole state) and `asks` (input schema: `topic` alone), the second built by a factory
    as a deployment registers one."""
    manager = backend.manager()
    assistant(manager.app, name="chat")(chat)
    langgraph_assistant(manager.app, "notes", _graph().compile())
    langgraph_assistant(manager.app, "asks", lambda: _graph(Question).compile())
    langgraph_assistant(manager.app, "tally", _tally().compile())
    return manager


def new_thread() -> str:
    return f"kwargs-{uuid.uuid4().hex[:12]}"


MISFITS = [
    # (assistant, kwargs, the field named, words of the message)
    ("chat", {"mesage": "one"}, "mesage", "unexpected keyword argument 'mesage' (it takes: "),
    ("chat", {}, "message", "missing the required argument 'message'"),
    ("chat", {"message": "hi", "context": 1}, "context", "takes its RunContext as 'context'"),
    ("fail", {"mesage": "one"}, "mesage", "unexpected keyword argument 'mesage'"),
    ("steps", {"stepz": 3}, "stepz", "(it takes: steps, delay, journal, cooperative)"),
    ("notes", {"input": "hello"}, "input", "must be an object of its state's keys"),
    ("notes", {"input": ["topic"]}, "input", "not list"),
    ("notes", {"input": {"topic": "a", "topc": "b"}}, "input.topc", "no such key"),
    ("asks", {"input": {"notes": ["x"]}}, "input.notes", "input schema (topic)"),
    ("research", {"input": {"topik": "queues"}}, "input.topik", "no such key"),
]
FITS = [
    ("chat", {"message": "hi"}),  # tone left to its default
    ("chat", {"message": "hi", "tone": "warm"}),
    ("fail", {}),  # every argument has a default
    ("steps", {"steps": 1}),
    ("echo", {"anything": 1, "at": "all"}),  # **kwargs
    ("notes", {"input": {"topic": "queues"}}),  # a partial state
    ("notes", {"input": {}}),
    ("notes", {}),  # no input: the graph goes on from the thread's checkpoint
    ("notes", {"command": {"resume": "yes"}}),
    ("asks", {"input": {"topic": "queues"}}),
    ("research", {"input": {"topic": "queues", "pause": 0}}),
    ("tally", {"input": [5]}),  # a list state takes a list: its input is not an object
]


@pytest.mark.parametrize(("name", "kwargs", "field", "words"), MISFITS)
def test_kwargs_that_do_not_fit_raise_and_write_nothing(checked, name, kwargs, field, words):  # noqa: ANN001
    thread_id = new_thread()
    with pytest.raises(InvalidKwargsError) as raised:
        checked.create_or_reject(thread_id, name, kwargs=kwargs, if_not_exists="create")
    assert isinstance(raised.value, InvalidPayloadError)  # the 422 family
    assert raised.value.field == field and raised.value.assistant_id == name
    assert words in str(raised.value), str(raised.value)
    assert row_counts(checked, [thread_id]) == (0, 0, 0)  # no run, no thread


def test_create_many_and_validate_many_share_the_check(checked):  # noqa: ANN001
    good, bad = new_thread(), new_thread()
    requests = [
        RunRequest(good, "chat", kwargs={"message": "hi"}),
        RunRequest(bad, "chat", kwargs={"mesage": "one"}),
    ]
    problems = checked.validate_many(requests)
    assert problems[0] is None
    assert isinstance(problems[1], InvalidKwargsError) and problems[1].field == "mesage"
    with pytest.raises(InvalidKwargsError) as raised:
        checked.create_many(requests)
    assert raised.value.index == 1 and raised.value.field == "mesage"  # attributes kept
    assert str(raised.value).startswith("request 1: assistant 'chat' got an unexpected")
    assert row_counts(checked, [good, bad]) == (0, 0, 0)  # not even the good one


@pytest.mark.parametrize(("name", "kwargs"), FITS)
def test_kwargs_that_fit_create_their_run(checked, name, kwargs):  # noqa: ANN001
    thread_id = new_thread()
    run = checked.create_or_reject(thread_id, name, kwargs=kwargs)
    assert run.kwargs == kwargs
    assert row_counts(checked, [thread_id])[:2] == (1, 1)
    checked.cancel(run.run_id)  # no worker serves these: end them


def test_a_graph_that_cannot_be_built_here_is_not_checked(checked, caplog):  # noqa: ANN001
    """The creating process cannot build the graph (its factory fails here): the input is
    not checked, the run is created, and the log says so without the error's text."""

    def build() -> Any:
        raise RuntimeError("needs a secret only the workers have")

    langgraph_assistant(checked.app, "elsewhere", build)
    thread_id = new_thread()
    run = checked.create_or_reject(thread_id, "elsewhere", kwargs={"input": "hello"})
    assert row_counts(checked, [thread_id])[0] == 1
    assert "its graph cannot be built in this process (RuntimeError)" in caplog.text
    assert "needs a secret" not in caplog.text
    checked.cancel(run.run_id)


def test_submit_says_it_in_one_line_and_writes_nothing(backend, checked, tmp_path):  # noqa: ANN001
    """`fail` takes `message`: the misspelt kwarg is refused by `submit` and by `submit
    --from` (the test suite's assistants, RUNQUEUE_IMPORTS, in the CLI's own process)."""
    env = settings_env(backend.settings)
    thread_id = new_thread()
    one = runqueue(env, "submit", "fail", "--thread", thread_id, "--kwargs", '{"mesage": "one"}')
    assert one.returncode == 1 and "Traceback" not in one.stderr, one.stderr
    assert one.stderr.splitlines() == [
        "error: assistant 'fail' got an unexpected keyword argument 'mesage' (it takes: message)"
    ]
    lines = tmp_path / "runs.jsonl"
    lines.write_text(
        json.dumps({"thread_id": thread_id, "kwargs": {"message": "fine"}})
        + "\n"
        + json.dumps({"thread_id": thread_id, "kwargs": {"mesage": "one"}})
        + "\n"
    )
    many = runqueue(env, "submit", "fail", "--from", str(lines))
    assert many.returncode == 1 and many.stdout == "", many
    said = [line for line in many.stderr.splitlines() if not line.startswith("note: ")]
    assert said == [
        "error: line 2: assistant 'fail' got an unexpected keyword argument 'mesage' "
        "(it takes: message)",
        f"error: 1 of 2 requests in {lines} is bad; nothing was submitted",
    ]
    assert row_counts(checked, [thread_id]) == (0, 0, 0)


@pytest.mark.parametrize("name", ["chat", "notes"])
def test_a_hostile_key_is_quoted_short_on_one_line(checked, name):  # noqa: ANN001
    """A 100,000-character key with a newline: the message quotes it cut, on one line; the
    error's field still names it whole."""
    key = "x\n" + "k" * 100_000
    kwargs = {"message": "hi", key: 1} if name == "chat" else {"input": {key: 1}}
    thread_id = new_thread()
    with pytest.raises(InvalidKwargsError) as raised:
        checked.create_or_reject(thread_id, name, kwargs=kwargs, if_not_exists="create")
    message = str(raised.value)
    assert len(message) < 300 and "\n" not in message, message[:300]
    assert raised.value.field.endswith(key)
    assert row_counts(checked, [thread_id]) == (0, 0, 0)

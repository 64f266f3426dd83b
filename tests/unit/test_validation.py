"""Input checks that run before anything is written."""

from __future__ import annotations

import math
import time
import uuid

import pytest

from runqueue import validation
from runqueue.errors import InvalidPayloadError, InvalidRunIdError, UnsupportedStrategyError
from runqueue.records import MultitaskStrategy


def test_run_ids_are_uuid7_and_sort_in_creation_order():
    ids = []
    for _ in range(5):
        ids.append(validation.new_run_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(validation.new_run_id() for _ in range(1000))) == 1000


@pytest.mark.parametrize("value", ["reject", "interrupt", "rollback", "enqueue"])
def test_known_strategies(value):
    assert validation.strategy(value) is MultitaskStrategy(value)


@pytest.mark.parametrize("value", ["", "Reject", None, 3, "'; DROP TABLE runs"])
def test_unknown_strategy(value):
    with pytest.raises(UnsupportedStrategyError, match="unsupported multitask strategy"):
        validation.strategy(value)


@pytest.mark.parametrize(
    "value", ["", "a" * 129, "has space", "quote'", "semi;colon", None, 12, "-leading-dash"]
)
def test_malformed_thread_ids(value):
    with pytest.raises(InvalidRunIdError):
        validation.thread_id(value)


# Fixed values: pytest-xdist's processes must collect the same test ids.
A_UUID_ONE_SHORT = "b61c9fd3-e47c-4d36-a264-4a5f7658e57"


@pytest.mark.parametrize("value", ["x", "1234", A_UUID_ONE_SHORT, None, "' OR 1=1 --"])
def test_malformed_run_ids(value):
    with pytest.raises(InvalidRunIdError):
        validation.run_id(value)


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        {"x": math.inf},
        {"x": -math.inf},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"x": "nul\x00byte"},
        [1, 2],
        "text",
    ],
)
def test_payloads_that_are_not_json_objects(value):
    with pytest.raises(InvalidPayloadError):
        validation.json_object("kwargs", value, 1024)


def test_payload_size_limit():
    assert validation.json_object("kwargs", {"x": "a" * 10}, 100) == {"x": "a" * 10}
    with pytest.raises(InvalidPayloadError, match="limit is 100"):
        validation.json_object("kwargs", {"x": "a" * 100}, 100)


def test_payload_is_normalised_to_plain_json():
    assert validation.json_object("kwargs", {"t": (1, 2)}, 100) == {"t": [1, 2]}
    assert validation.json_object("kwargs", None, 100) == {}


@pytest.mark.parametrize("name", ["a/b", "x" * 129, "has space", ".hidden", "é"])
def test_an_assistant_name_that_cannot_name_its_queue_is_refused_at_registration(tmp_path, name):
    """The name is part of the assistant's broker queue (a file name on the embedded
    broker): refused when registered, not a run pending forever whose publish always fails."""
    from runqueue import InvalidAssistantNameError, Settings, assistant, create_app
    from runqueue.langgraph import langgraph_assistant

    app = create_app(Settings(data_dir=tmp_path))
    with pytest.raises(InvalidAssistantNameError, match="names the assistant's broker queue"):
        assistant(app, name)(print)
    with pytest.raises(InvalidAssistantNameError):
        langgraph_assistant(app, name, lambda: None)
    assert name not in app.tasks


def test_celery_style_assistant_names_are_accepted(tmp_path):
    from runqueue import Settings, assistant, create_app

    def body(context) -> None:  # noqa: ANN001
        return None

    app = create_app(Settings(data_dir=tmp_path))
    names = ("chat", "workers.tools.search", "gpu:summarize-v2", "x" * 128)
    for name in names:
        assistant(app, name)(body)
    assert set(names) <= set(app.tasks)

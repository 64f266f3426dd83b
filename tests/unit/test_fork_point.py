"""Where a run's fork comes from in a request's body (runqueue/api/run_creation.py): the SDKs'
`checkpoint` and `checkpoint_id`, and config.configurable as the reference takes it."""

from __future__ import annotations

from typing import Any

import pytest

from runqueue.api.run_creation import fork_point, run_kwargs, without_fork_keys
from runqueue.api.schemas import RunCreate
from runqueue.errors import InvalidPayloadError

ID = "1f1f2485-84b1-6b0c-bfff-6fcfa55ee1d4"
OTHER = "1f1f2485-84b3-6d98-8000-7c87e025326b"


class _Graph:
    name = "agent"
    takes_run_fields = True


def _body(**fields: Any) -> RunCreate:
    return RunCreate(assistant_id="agent", **fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"checkpoint_id": ID},
        {"checkpoint_id": ID.upper()},
        {"checkpoint": {"checkpoint_id": ID, "checkpoint_ns": "", "thread_id": "t"}},
        {"checkpoint": {"checkpoint_id": ID, "checkpoint_map": {}}},
        {"config": {"configurable": {"checkpoint_id": ID, "checkpoint_ns": ""}}},
        {"checkpoint": {"checkpoint_id": ID}, "checkpoint_id": ID},
    ],
)
def test_each_way_the_sdks_give_a_checkpoint_is_one_fork(fields: dict[str, Any]):
    assert fork_point(_body(**fields)) == ID


@pytest.mark.parametrize(
    "fields",
    [{}, {"checkpoint": {}}, {"checkpoint": {"checkpoint_id": None}}, {"checkpoint_id": ""}],
)
def test_no_checkpoint_is_no_fork(fields: dict[str, Any]):
    assert fork_point(_body(**fields)) is None
    assert "checkpoint_id" not in run_kwargs(_Graph(), _body(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"checkpoint_id": "nope"}, "checkpoint_id 'nope' is not a checkpoint id"),
        ({"checkpoint": {"checkpoint_id": "1ef"}}, "checkpoint.checkpoint_id '1ef'"),
        ({"checkpoint": {"checkpoint_id": ID, "checkpoint_ns": "sub:1"}}, "checkpoint_ns 'sub:1'"),
        ({"checkpoint": {"checkpoint_id": ID, "checkpoint_map": {"": ID}}}, "checkpoint_map"),
        (
            {"config": {"configurable": {"checkpoint_id": ID, "checkpoint_ns": "x"}}},
            "config.configurable.checkpoint_ns 'x'",
        ),
        ({"checkpoint": {"checkpoint_id": ID}, "checkpoint_id": OTHER}, "two different"),
    ],
)
def test_a_checkpoint_runqueue_cannot_fork_from_is_refused_naming_the_field(
    fields: dict[str, Any], named: str
):
    with pytest.raises(InvalidPayloadError, match=named):
        fork_point(_body(**fields))


def test_the_fork_travels_as_the_runs_option_not_in_its_configurable():
    config = {"configurable": {"checkpoint_id": ID, "checkpoint_ns": "", "user": "ada"}, "tags": []}
    kwargs = run_kwargs(_Graph(), _body(config=config, input={}))  # type: ignore[arg-type]
    assert kwargs["checkpoint_id"] == ID
    assert kwargs["config"] == {"configurable": {"user": "ada"}, "tags": []}
    assert kwargs["context"] == {"user": "ada"}
    assert without_fork_keys({"configurable": {"checkpoint_id": ID}}) == {}
    assert without_fork_keys(None) is None

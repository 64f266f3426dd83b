"""RunRequest and create_many without services: embedded (SQLite in-process, the filesystem
broker in tmp_path), no worker. And `submit --from`'s usage errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from click.testing import CliRunner

from runqueue import (
    ConflictError,
    InvalidPayloadError,
    RunManager,
    RunOptions,
    RunRecord,
    RunRequest,
    RunStatus,
    Settings,
    SyncRunManager,
    create_app,
)
from runqueue.cli import main
from runqueue.store.database import migrate
from tests.support import queued_message_files
from workers.assistants import register_with_journal


@pytest.fixture
def manager(tmp_path) -> SyncRunManager:
    settings = Settings(data_dir=tmp_path)
    migrate(settings)
    app = create_app(settings)
    register_with_journal(app)
    return SyncRunManager(app)


def published(manager: SyncRunManager) -> list[str]:
    """The task ids of the messages the embedded broker holds."""
    files = queued_message_files(manager)
    return sorted(json.loads(path.read_text())["headers"]["id"] for path in files)


def test_a_request_takes_the_options_of_create_or_reject():
    fields = {field.name for field in dataclasses.fields(RunRequest)}
    assert fields == {"thread_id", "assistant_id"} | RunOptions.__optional_keys__


def test_a_request_has_create_or_rejects_defaults(manager):
    one = manager.create_or_reject("t1", "echo")
    (many,) = manager.create_many([RunRequest("t2", "echo")])
    ignored = {"run_id", "thread_id", "created_at", "updated_at"}
    as_created = {k: v for k, v in dataclasses.asdict(one).items() if k not in ignored}
    assert {k: v for k, v in dataclasses.asdict(many).items() if k not in ignored} == as_created


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["t1"], "a run request is a JSON object, not list"),
        ({"thread_id": "t1", "strategy": "enqueue"}, "unknown field 'strategy' (fields: "),
        ({"assistant_id": "echo"}, "thread_id is required"),
        ({"thread_id": "t1", "own_thread": "false"}, "own_thread must be true or false"),
    ],
)
def test_from_json_refuses_what_is_not_a_request(value, reason):
    with pytest.raises(InvalidPayloadError) as refused:
        RunRequest.from_json(value)
    assert str(refused.value).startswith(reason)


def test_from_json_takes_every_field():
    value = {
        "thread_id": "t1",
        "assistant_id": "echo",
        "kwargs": {"x": 1},
        "metadata": {"m": 2},
        "multitask_strategy": "enqueue",
        "on_disconnect": "cancel",
        "follow_up_to_run_id": None,
        "user_id": "alice",
        "if_not_exists": "reject",
        "own_thread": True,
        "webhook": "https://hooks.example.com/done",
        "after": 2.5,
    }
    assert dataclasses.asdict(RunRequest.from_json(value)) == value


def test_a_run_interrupted_by_a_later_request_of_its_batch_is_never_published(manager):
    first, second, other = manager.create_many(
        [
            RunRequest("t1", "echo"),
            RunRequest("t1", "echo", multitask_strategy="interrupt"),
            RunRequest("t2", "echo"),
        ]
    )
    assert manager.get(first.run_id).status is RunStatus.interrupted
    assert published(manager) == sorted([second.run_id, other.run_id])


def test_held_runs_are_not_published(manager):
    runs = manager.create_many(
        [RunRequest("t1", "echo", multitask_strategy="enqueue") for _ in range(3)]
    )
    assert published(manager) == [runs[0].run_id]
    assert all(manager.why_pending(run.run_id).startswith("held behind") for run in runs[1:])


def test_validate_many_says_why_each_request_would_be_refused(manager):
    problems = manager.validate_many(
        [RunRequest("t1", "echo"), RunRequest("t1", "nobody"), RunRequest("bad id", "echo")]
    )
    assert problems[0] is None
    assert str(problems[1]).startswith("unknown assistant 'nobody'")
    assert str(problems[2]).startswith("invalid thread id: 'bad id'")
    assert published(manager) == [] and manager.list_runs() == []


def test_the_async_twin_takes_its_arguments_through(manager):
    runs = RunManager(manager.app)

    async def scenario() -> list:
        await runs.create_or_reject("t1", "echo")
        return await runs.create_many(
            [RunRequest("t1", "echo"), RunRequest("t1", "echo")], check_strategy=False
        )

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, RunRecord) for outcome in outcomes)  # no strategy applied
    with pytest.raises(ConflictError):
        manager.create_or_reject("t1", "echo")


@pytest.fixture
def invoke(tmp_path):
    """The CLI with an unreachable database: these errors come before any service."""
    env = {
        "RUNQUEUE_DATA_DIR": str(tmp_path),
        "RUNQUEUE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/never",
    }
    return lambda *args, **kwargs: CliRunner().invoke(main, list(args), env=env, **kwargs)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--thread", "t1"], "error: --thread does not apply with --from (one run per line)"),
        (["--wait"], "error: --wait does not apply with --from (one run per line)"),
        (["--kwargs", "{}"], "error: --kwargs does not apply with --from (one run per line)"),
    ],
)
def test_options_of_one_run_do_not_apply_with_from(invoke, args, expected):
    result = invoke("submit", "echo", "--from", "-", *args, input="")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{expected} (see 'main submit --help')"]


def test_without_from_assistant_and_thread_are_required(invoke):
    result = invoke("submit", "--thread", "t1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Missing argument 'ASSISTANT'.")


def test_a_missing_file_is_a_usage_error(invoke, tmp_path):
    result = invoke("submit", "echo", "--from", str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2
    assert "Invalid value for '--from'" in result.stderr
    assert "missing.jsonl': No such file or directory" in result.stderr

"""`runqueue submit --from FILE` as a subprocess on both backends: a file with a bad line
submits nothing and names every bad line, stdin works, a long file is created whole with
progress, and a strategy's refusal names its line. No worker: the runs stay pending."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from tests.support import queue_of, queued_message_files, row_counts, settings_env
from tests.support import run_cli as runqueue

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(backend) -> dict[str, str]:  # noqa: ANN001
    return settings_env(backend.settings)


def new_thread() -> str:
    return f"jsonl-{uuid.uuid4().hex[:12]}"


def queue_length(manager, assistant_id: str) -> int:  # noqa: ANN001
    settings = manager.settings
    if settings.is_embedded_broker:
        return len(queued_message_files(manager, assistant_id))
    return redis.Redis.from_url(settings.broker_url).llen(queue_of(manager, assistant_id))


def said(result: subprocess.CompletedProcess) -> list[str]:
    """stderr's lines but the notes (no live worker serves the assistant: none runs here)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("note: ")]


def jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_with_bad_lines_names_each_and_submits_nothing(env, manager, tmp_path):
    good, other = new_thread(), new_thread()
    path = jsonl(
        tmp_path / "runs.jsonl",
        [
            json.dumps({"thread_id": good, "kwargs": {"x": 1}}),
            '{"thread_id": "t", oops}',
            json.dumps({"thred": good}),
            "",
            json.dumps({"thread_id": other, "assistant_id": "nobody"}),
            json.dumps({"kwargs": {}}),
            json.dumps({"thread_id": other, "kwargs": {"x": float("nan")}}),  # NaN: not JSON
            json.dumps({"thread_id": other}),
        ],
    )
    result = runqueue(env, "submit", "echo", "--from", str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: line 2: not JSON (Expecting property name")
    assert lines[1].startswith("error: line 3: unknown field 'thred' (fields: after, assistant_id,")
    assert lines[2].startswith("error: line 5: unknown assistant 'nobody' (registered: ")
    assert lines[3] == "error: line 6: thread_id is required"
    assert lines[4].startswith("error: line 7: kwargs is not JSON-serializable")
    assert lines[5] == f"error: 5 of 7 requests in {path} are bad; nothing was submitted"
    assert len(lines) == 6
    assert row_counts(manager, [good, other]) == (0, 0, 0)


def test_stdin_with_defaults_from_the_command_line_and_a_refused_line(env, manager):
    """Lines 1, 2 and 5 are created (2 held behind 1: --strategy enqueue); line 4 names the
    reject strategy on line 1's busy thread: refused, named, not written."""
    thread_id, other = new_thread(), new_thread()
    stdin = "\n".join(
        [
            json.dumps({"thread_id": thread_id, "kwargs": {"n": 1}}),
            json.dumps({"thread_id": thread_id}),
            "   ",
            json.dumps({"thread_id": thread_id, "multitask_strategy": "reject"}),
            json.dumps({"thread_id": other, "assistant_id": "noop", "metadata": {"m": 1}}),
        ]
    )
    result = runqueue(env, "submit", "echo", "--strategy", "enqueue", "--from", "-", stdin=stdin)
    assert result.returncode == 1, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(outcome["line"], outcome["status"]) for outcome in outcomes] == [
        (1, "pending"),
        (2, "pending"),
        (4, "refused"),
        (5, "pending"),
    ]
    first = outcomes[0]["run_id"]
    assert outcomes[2]["run_id"] is None
    assert f"thread {thread_id} already has an active run ({first}" in outcomes[2]["error"]
    assert said(result) == [
        f"refused: line 4: {outcomes[2]['error']}",
        "error: 1 of 4 runs refused by their thread's strategy (line 4); 3 created",
    ]

    runs = [manager.get(outcomes[i]["run_id"]) for i in (0, 1, 3)]
    assert [(run.thread_id, run.assistant_id) for run in runs] == [
        (thread_id, "echo"),
        (thread_id, "echo"),
        (other, "noop"),
    ]
    assert runs[0].kwargs == {"n": 1} and runs[2].metadata == {"m": 1}
    assert [run.multitask_strategy.value for run in runs] == ["enqueue"] * 3
    assert manager.why_pending(runs[1].run_id).startswith(f"held behind run {first}")
    assert row_counts(manager, [thread_id, other]) == (3, 2, 3)  # nothing of line 4


def test_a_long_file_is_created_and_published_whole_with_progress(env, backend, manager, tmp_path):
    threads = [new_thread() for _ in range(2000)]
    path = jsonl(
        tmp_path / "long.jsonl",
        [json.dumps({"thread_id": t, "kwargs": {"n": n}}) for n, t in enumerate(threads)],
    )
    queued = queue_length(manager, "noop")
    result = runqueue(env, "submit", "noop", "--from", str(path))
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [outcome["line"] for outcome in outcomes] == list(range(1, 2001))
    assert said(result) == [
        "submitted 1000/2000",
        "submitted 2000/2000",
        f"created 2000 runs from {path}",
    ]
    assert row_counts(manager, threads) == (2000, 2000, 2000)
    assert queue_length(manager, "noop") == queued + 2000  # each run published, once

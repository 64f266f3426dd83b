"""`runqueue submit --after`, and how a delayed run shows in `runs`, `show` and `--json`,
run as subprocesses against the real services, on both backends."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from runqueue import RunStatus
from tests.support import run_cli as runqueue
from tests.support import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(backend) -> dict[str, str]:  # noqa: ANN001
    """The backend's settings; no COLUMNS, so that piped tables show whole run ids."""
    return {k: v for k, v in settings_env(backend.settings).items() if k != "COLUMNS"}


def test_submit_after_shows_the_due_time_until_cancelled(env, worker, manager):
    thread_id = f"cli-{uuid.uuid4().hex[:12]}"
    result = runqueue(env, "submit", "echo", "--thread", thread_id, "--after", "60")
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] == "pending"
    due_at = datetime.fromisoformat(submitted["due_at"])
    run_id = submitted["run_id"]

    shown = runqueue(env, "show", run_id)  # well before due: pending, saying until when
    assert shown.returncode == 0, shown.stderr
    assert submitted["due_at"] in shown.stdout
    assert f"pending: delayed until {submitted['due_at']}" in " ".join(shown.stdout.split())
    as_json = json.loads(runqueue(env, "show", run_id, "--json").stdout)
    assert as_json["due_at"] == submitted["due_at"] and as_json["status"] == "pending"
    listed = runqueue(env, "runs", "--thread", thread_id)
    assert f"due {due_at.strftime('%H:%M:%S')}" in listed.stdout, listed.stdout

    cancelled = runqueue(env, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    run = manager.get(run_id)
    assert run.status is RunStatus.interrupted and run.started_at is None
    assert run.due_at == due_at


def test_submit_after_is_checked(env, tmp_path):
    negative = runqueue(env, "submit", "echo", "--thread", "t-neg", "--after", "-1")
    assert negative.returncode == 2 and "--after" in negative.stderr
    lines = tmp_path / "runs.jsonl"
    lines.write_text('{"thread_id": "t-file", "after": 5}\n')
    with_from = runqueue(env, "submit", "echo", "--from", str(lines), "--after", "1")
    assert with_from.returncode == 2
    assert "--after does not apply with --from" in with_from.stderr

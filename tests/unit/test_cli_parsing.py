"""CLI parsing and validation that happen before any service is contacted."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from runqueue.cli import main

COMMANDS = (
    "demo",
    "worker",
    "migrate",
    "submit",
    "runs",
    "show",
    "cancel",
    "threads",
    "reap",
    "serve",
    "api-key",
)


@pytest.fixture
def invoke(tmp_path):
    runner = CliRunner()
    # An unreachable database: a test that reached it would fail with a different message.
    env = {
        "RUNQUEUE_DATA_DIR": str(tmp_path),
        "RUNQUEUE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/never",
        "RUNQUEUE_BROKER_URL": "redis://127.0.0.1:1/0",
    }

    def run(*args: str):
        return runner.invoke(main, list(args), env=env)

    return run


def one_line_error(result) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.output or f"  {command}\n" in result.output, command


def test_submit_rejects_non_json_kwargs(invoke):
    line = one_line_error(invoke("submit", "echo", "--thread", "t", "--kwargs", "{oops"))
    assert "--kwargs is not JSON" in line


def test_submit_rejects_unknown_strategy_before_any_service(invoke):
    line = one_line_error(invoke("submit", "echo", "--thread", "t", "--strategy", "sideways"))
    assert "unsupported multitask strategy 'sideways'" in line
    assert "reject, interrupt, rollback, enqueue" in line


def test_submit_rejects_bad_thread_id(invoke):
    line = one_line_error(invoke("submit", "echo", "--thread", "../../etc"))
    assert "invalid thread id" in line


def test_cancel_rejects_unknown_action(invoke):
    line = one_line_error(invoke("cancel", "0190a8e2-0000-7000-8000-000000000000", "--action", "x"))
    assert "invalid cancel action 'x'" in line


def test_show_rejects_a_bad_run_id(invoke):
    assert "invalid run id: 'nope'" in one_line_error(invoke("show", "nope"))


def test_submit_requires_a_thread(invoke):
    result = invoke("submit", "echo")
    assert result.exit_code == 2
    assert "Missing option '--thread'" in result.stderr


def test_serve_refuses_keys_off_on_a_public_address(tmp_path):
    result = CliRunner().invoke(
        main,
        ["serve", "--host", "0.0.0.0"],
        env={"RUNQUEUE_DATA_DIR": str(tmp_path), "RUNQUEUE_API_AUTH": "off"},
    )
    assert "RUNQUEUE_API_AUTH=off is refused on 0.0.0.0" in one_line_error(result)


def test_api_key_revoke_of_an_unknown_key_is_one_line(tmp_path):
    """In a process of its own: the app module caches the settings it was imported with."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNQUEUE_")}
    env["RUNQUEUE_DATA_DIR"] = str(tmp_path)
    runqueue = [sys.executable, "-m", "runqueue"]
    subprocess.run([*runqueue, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    done = subprocess.run(
        [*runqueue, "api-key", "revoke", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no active key nope (see runqueue api-key list)"

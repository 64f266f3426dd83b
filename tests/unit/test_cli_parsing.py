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
    "assistants",
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


def one_line_error(result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, (result.output, result.exception)
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
    line = one_line_error(
        invoke("submit", "echo", "--thread", "t", "--strategy", "sideways"), exit_code=2
    )
    assert "unsupported multitask strategy 'sideways'" in line
    assert "reject, interrupt, rollback, enqueue" in line


def test_submit_rejects_bad_thread_id(invoke):
    line = one_line_error(invoke("submit", "echo", "--thread", "../../etc"))
    assert "invalid thread id" in line


def test_cancel_rejects_unknown_action(invoke):
    run_id = "0190a8e2-0000-7000-8000-000000000000"
    line = one_line_error(invoke("cancel", run_id, "--action", "x"), exit_code=2)
    assert "invalid cancel action 'x'" in line


def test_show_rejects_a_bad_run_id(invoke):
    assert "invalid run id: 'nope'" in one_line_error(invoke("show", "nope"))


def test_submit_requires_a_thread(invoke):
    line = one_line_error(invoke("submit", "echo"), exit_code=2)
    assert "Missing option '--thread'" in line and "submit --help" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nosuch",), "No such command 'nosuch'"),
        (("--bogus", "runs"), "No such option '--bogus'"),
        (("runs", "--limit", "-1"), "Invalid value for '--limit': -1 is not in the range"),
        (("runs", "--limit", "many"), "Invalid value for '--limit'"),
        (("threads", "--limit", "-1"), "Invalid value for '--limit'"),
        (("runs", "--status", "done"), "unknown run status 'done' (one of: pending, running"),
        (("show",), "Missing argument 'RUN_ID'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(invoke, args, expected):
    """click prints usage, a hint and the error on three lines; runqueue prints one."""
    assert expected in one_line_error(invoke(*args), exit_code=2)


def test_help_names_the_environment_variables_and_choices(invoke):
    top = " ".join(invoke("--help").output.split())
    for variable in ("DATABASE_URL", "BROKER_URL", "DATA_DIR", "APP", "QUEUE"):
        assert f"env var: RUNQUEUE_{variable}" in top, variable
    assert "RUNQUEUE_<NAME>" in top
    assert "[pending|running|success|error|timeout|interrupted]" in invoke("runs", "--help").output
    assert "[reject|interrupt|rollback|enqueue]" in invoke("submit", "--help").output
    assert "[interrupt|rollback]" in invoke("cancel", "--help").output
    for command in ("runs", "show", "threads", "assistants"):
        assert "--json" in invoke(command, "--help").output, command


def test_unknown_database_scheme_names_the_supported_ones(invoke):
    line = one_line_error(invoke("--database-url", "bogus://x", "runs"))
    assert line == (
        "error: unsupported database URL bogus://x "
        "(supported: sqlite:///PATH, postgresql+psycopg://...)"
    )


def test_kwargs_that_are_not_an_object_are_refused(invoke, tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    line = one_line_error(
        invoke("submit", "echo", "--thread", "t", "--kwargs", f"@{tmp_path}/list.json")
    )
    assert "--kwargs file" in line and "must be a JSON object, got list" in line
    line = one_line_error(invoke("submit", "echo", "--thread", "t", "--kwargs", "@missing.json"))
    assert "cannot read the --kwargs file missing.json: No such file or directory" in line


def test_shortest_unique_length():
    from runqueue.cli.views import SHORT_ID_MIN, shortest_unique_length

    a = "01a21826-3c54-72a8-ab66-ba16cf051037"
    b = "01a21826-3c55-72a8-ab66-ba16cf051037"
    c = "01a21827-0000-72a8-ab66-ba16cf051037"
    assert shortest_unique_length([a]) == SHORT_ID_MIN
    assert shortest_unique_length([a, c]) == SHORT_ID_MIN  # they differ at the 8th character
    assert shortest_unique_length([a], others=[b]) == 13  # "01a21826-3c54" vs "...-3c55"
    assert shortest_unique_length([c], others=[a, b]) == SHORT_ID_MIN


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

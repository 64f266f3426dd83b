"""`runqueue assistant ...` as a subprocess on the embedded backend (SQLite): create, patch,
set the active version back, list with versions; bad input is one line and exit 1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runqueue import Settings
from runqueue.registry.assistants import default_assistant_id
from tests.support import run_cli as runqueue
from tests.support import settings_env

pytestmark = pytest.mark.integration


def test_assistant_versions_from_the_command_line(tmp_path: Path) -> None:
    env = settings_env(Settings(data_dir=tmp_path / "data", app="tests.api_app:app"))
    env.pop("COLUMNS", None)
    assert runqueue(env, "migrate").returncode == 0

    made = runqueue(
        env, "assistant", "create", "options", "--config", '{"configurable": {"tone": "v1"}}'
    )
    assert made.returncode == 0, made.stderr
    aid = json.loads(made.stdout)["assistant_id"]
    for tone in ("v2", "v3"):
        patched = runqueue(env, "assistant", "patch", aid, "--context", json.dumps({"tone": tone}))
        assert json.loads(patched.stdout)["version"] in (2, 3), patched.stderr
    latest = json.loads(runqueue(env, "assistant", "latest", aid, "1").stdout)
    assert (latest["version"], latest["context"]) == (1, {"tone": "v1"})

    versions = json.loads(runqueue(env, "assistant", "versions", aid, "--json").stdout)
    assert [(v["version"], v["context"]["tone"]) for v in versions] == [
        (3, "v3"),
        (2, "v2"),
        (1, "v1"),
    ]
    listed = json.loads(runqueue(env, "assistant", "list", "--graph", "options", "--json").stdout)
    assert {(a["assistant_id"], a["version"]) for a in listed} == {
        (aid, 1),
        (default_assistant_id("options"), 1),
    }
    table = runqueue(env, "assistant", "versions", aid)
    assert "(active: 1)" in table.stdout and "v3" in table.stdout
    # `runqueue assistants`: the registered ones, then the stored ones at their active version.
    listed = runqueue(env, "assistants").stdout
    assert "stored assistants, active version" in listed
    assert re.search(rf"{aid[:8]}.*\boptions\b.*\b1\b", listed), listed

    for args, expected in (
        (("assistant", "patch", default_assistant_id("options"), "--name", "x"), "read-only"),
        (("assistant", "create", "options", "--config", "[1]"), "--config must be a JSON object"),
        (("assistant", "create", "no-such-graph"), "graph 'no-such-graph' not found"),
        (("assistant", "latest", aid, "9"), "version 9 not found"),
    ):
        refused = runqueue(env, *args)
        assert refused.returncode == 1, refused
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], refused.stderr
    assert runqueue(env, "assistant", "delete", aid).returncode == 0
    assert runqueue(env, "assistant", "versions", aid).returncode == 1

"""The README's terminal commands ("From the terminal"), run as a newcomer runs them: bare
`runqueue ...` with the virtual environment's bin on PATH, in the folder of chat.py, while
the worker the README starts (`runqueue --app chat:app worker`) serves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runqueue import Settings
from tests.integration.test_readme import block_after, clean_env
from tests.support import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.integration


def test_readme_terminal_commands_run_against_the_readme_worker(tmp_path):
    (tmp_path / "chat.py").write_text(block_after("example: chat.py", "python"))
    commands = [
        line.split("  #")[0].strip()
        for line in block_after("cli-commands", "sh").splitlines()
        if line.strip()
    ]
    assert all(command.startswith("runqueue ") for command in commands), commands
    settings = Settings(data_dir=tmp_path / "data", queue=f"readme-cli-{tmp_path.name}")
    venv_bin = str(Path(sys.executable).parent)
    env = clean_env(
        RUNQUEUE_DATA_DIR=str(settings.data_dir),
        RUNQUEUE_QUEUE=settings.queue,
        PYTHONPATH=str(REPO_ROOT),
    )
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")  # as the README says
    env.pop("COLUMNS", None)  # piped output as wide as it needs: whole run ids
    subprocess.run(["runqueue", "migrate"], cwd=tmp_path, env=env, check=True, capture_output=True)
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        concurrency=1,
        extra_env={"RUNQUEUE_APP": "chat:app", "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"},
    ).start()
    try:
        outputs = []
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, (command, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            outputs.append(done.stdout)
    finally:
        worker.stop()
    assistants, submitted, runs = outputs
    assert "chat" in assistants
    run = json.loads(submitted)
    assert run["status"] == "success", run
    assert run["result"] == {"reply": "you said 'hi'", "turn": 1}
    assert run["run_id"] in runs and "success" in runs

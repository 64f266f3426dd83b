"""The ways in that the README and docs show: the public imports, the `runqueue` console
script, `python -m runqueue`, and `celery -A workers.app worker`, which must write statuses
(the signal handlers are connected) and relay runs (the maintenance bootstep runs) exactly as
`runqueue worker` does."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import runqueue
from runqueue import RunStatus
from tests.support import WorkerProcess

pytestmark = pytest.mark.integration


class CeleryWorker(WorkerProcess):
    """The fleet's app started by Celery's own command instead of `runqueue worker`."""

    COMMAND = ("celery", "-A", "workers.app", "worker")


def test_every_public_name_imports():
    assert runqueue.__all__
    for name in runqueue.__all__:
        assert getattr(runqueue, name) is not None, name


@pytest.mark.parametrize(
    "argv",
    [[str(Path(sys.executable).with_name("runqueue"))], [sys.executable, "-m", "runqueue"]],
    ids=["console-script", "python-m"],
)
def test_the_cli_runs_from_its_console_script_and_as_a_module(argv):
    result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "migrate" in result.stdout


def test_celery_worker_command_executes_and_relays_runs(backend, tmp_path):
    worker = CeleryWorker(backend.settings, tmp_path / "celery-worker.log", concurrency=1)
    worker.start()
    try:
        manager = backend.manager()
        run = manager.create_or_reject(f"celery-{uuid.uuid4().hex[:8]}", "echo", kwargs={"x": 1})
        done = manager.join(run.run_id, timeout=30)
        assert done.status is RunStatus.success, worker.log()
        assert done.result == {"echo": {"x": 1}, "turn": 1}

        # Published nowhere (its broker is unreachable): only this worker's relay can send it.
        unpublished = backend.manager(broker_url="redis://127.0.0.1:1/0").create_or_reject(
            f"celery-{uuid.uuid4().hex[:8]}", "echo"
        )
        assert manager.join(unpublished.run_id, timeout=30).status is RunStatus.success
    finally:
        worker.stop()

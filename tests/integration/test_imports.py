"""RUNQUEUE_IMPORTS names the assistants a fleet serves: the deployed default serves the
example assistants without their file-writing `journal` option."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from runqueue import RunStatus, SyncRunManager, create_app
from runqueue.errors import SettingsError
from tests.support import WorkerProcess, as_process, make_backend, settings_env

pytestmark = pytest.mark.integration

DEPLOYED = "workers.assistants:register_deployable"


def test_the_deployed_assistants_refuse_the_journal_option(tmp_path: Path):
    backend = make_backend("embedded", tmp_path, imports=DEPLOYED)
    try:
        settings = backend.settings
        worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=1).start()
        try:
            runs = SyncRunManager(create_app(settings, name="imports-test"))
            target = tmp_path / "written-by-a-submitter.txt"
            thread = f"imports-{uuid.uuid4().hex[:8]}"
            refused = runs.create_or_reject(thread, "echo", kwargs={"journal": str(target)})
            served = runs.create_or_reject(
                thread, "echo", kwargs={"x": 1}, multitask_strategy="enqueue"
            )
            refused = runs.join(refused.run_id, timeout=30)
            served = runs.join(served.run_id, timeout=30)
        finally:
            worker.stop()
        assert refused.status is RunStatus.error
        assert "journal option is for the demo and tests only" in refused.error
        assert not target.exists()
        assert served.status is RunStatus.success and served.result["echo"] == {"x": 1}
    finally:
        backend.close()


def test_every_process_sees_the_imported_assistants(tmp_path: Path):
    """The CLI (a process that never runs a worker) lists what RUNQUEUE_IMPORTS registers."""
    settings = make_backend("embedded", tmp_path, imports=DEPLOYED).settings
    app = create_app(settings, name="imports-test")
    assert {"echo", "steps", "noop"} <= set(app.tasks)
    done = subprocess.run(
        as_process(["runqueue", "submit", "noop", "--thread", "t-imports"]),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["status"] in ("pending", "queued")


@pytest.mark.parametrize("entry", ["workers.nowhere:register", "workers.assistants:nothing"])
def test_an_import_that_cannot_load_is_a_settings_error(tmp_path: Path, entry: str):
    settings = make_backend("embedded", tmp_path).settings.with_overrides(imports=entry)
    with pytest.raises(SettingsError, match="RUNQUEUE_IMPORTS"):
        create_app(settings, name="imports-test")

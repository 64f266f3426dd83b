"""RUNQUEUE_IMPORTS names the assistants a fleet serves: the default (workers.app with no
RUNQUEUE_IMPORTS) and docker-compose's serve the example assistants without their
file-writing `journal` option."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from runqueue import RunStatus, SyncRunManager, create_app
from runqueue.errors import InvalidPayloadError, SettingsError
from tests.support import WorkerProcess, as_process, make_backend, settings_env
from workers.assistants import register, register_with_journal

pytestmark = pytest.mark.integration

DEPLOYED = "workers.assistants:register"


@pytest.mark.parametrize("imports", ["", DEPLOYED], ids=["default-install", "compose"])
def test_the_deployed_assistants_refuse_the_journal_option(tmp_path: Path, imports: str):
    """An API user of a default install (RUNQUEUE_IMPORTS unset) must not choose a file for
    the worker to write: refused when the run is created, nothing written; and a run that
    asks for it anyway (created by a producer that registers the test-only option) fails on
    the deployed worker without writing."""
    backend = make_backend("embedded", tmp_path, imports=imports)
    try:
        settings = backend.settings
        worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=1).start()
        try:
            app = create_app(settings, name="imports-test")
            if not imports:
                register(app)  # as workers.app does with RUNQUEUE_IMPORTS unset
            runs = SyncRunManager(app)
            target = tmp_path / "written-by-a-submitter.txt"
            thread = f"imports-{uuid.uuid4().hex[:8]}"
            with pytest.raises(InvalidPayloadError, match="journal"):
                runs.create_or_reject(thread, "echo", kwargs={"journal": str(target)})
            assert runs.get_thread(thread) is None  # nothing written
            testing = create_app(settings.with_overrides(imports=""), name="imports-producer")
            register_with_journal(testing)
            bypass = SyncRunManager(testing).create_or_reject(
                thread, "echo", kwargs={"journal": str(target)}
            )
            served = runs.create_or_reject(
                thread, "echo", kwargs={"x": 1}, multitask_strategy="enqueue"
            )
            bypass = runs.join(bypass.run_id, timeout=30)
            served = runs.join(served.run_id, timeout=30)
        finally:
            worker.stop()
        assert bypass.status is RunStatus.error
        assert "journal option is for the demo and tests only" in bypass.error
        assert not target.exists()
        assert served.status is RunStatus.success and served.result["echo"] == {"x": 1}
    finally:
        backend.close()


def test_the_deployed_graphs_refuse_the_journal_state_key(tmp_path: Path):
    """The example graphs keep a `journal` state key (a file each node appends to): a default
    install refuses it in a run's input and in a command's update, nothing written; and a
    run that carries it anyway (created by a producer registering the graphs without the
    refusal) fails on the deployed worker before any node runs."""
    backend = make_backend("embedded", tmp_path, imports=DEPLOYED)
    try:
        settings = backend.settings
        worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=1).start()
        try:
            runs = SyncRunManager(create_app(settings, name="graphs-deployed"))
            target = tmp_path / "written-by-a-submitter.txt"
            thread = f"graphs-{uuid.uuid4().hex[:8]}"
            for kwargs in (
                {"input": {"topic": "x", "pause": 0.1, "journal": str(target)}},
                {"command": {"update": {"journal": str(target)}, "goto": "research"}},
                {"command": {"update": [["journal", str(target)]], "goto": "research"}},
            ):
                with pytest.raises(InvalidPayloadError, match="journal"):
                    runs.create_or_reject(thread, "research", kwargs=kwargs)
            assert runs.get_thread(thread) is None  # nothing written
            testing = create_app(settings.with_overrides(imports=""), name="graphs-producer")
            register_with_journal(testing)
            bypass = SyncRunManager(testing).create_or_reject(
                thread, "research", kwargs={"input": {"pause": 0.1, "journal": str(target)}}
            )
            bypass = runs.join(bypass.run_id, timeout=60)
        finally:
            worker.stop()
        assert bypass.status is RunStatus.error
        assert "turned it off" in bypass.error
        assert not target.exists()
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

"""A run goes only to workers that serve its assistant, on each backend: a fleet whose workers
serve disjoint assistants (graphs on one host, tools on another) shares one broker and one
Settings.queue, and no worker takes a run it would discard as an unregistered task. Two
workers on one host get two node names; two deployments on one broker never take each
other's runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Exchange, Queue
from sqlalchemy import select

from runqueue import RunStatus, SyncRunManager, assistant, create_app
from runqueue.store.models import Run
from tests import routing_apps
from tests.conftest import require_services
from tests.support import (
    REPO_ROOT,
    Backend,
    WorkerProcess,
    make_backend,
    queue_of,
    run_cli,
    settings_env,
    wait_until,
)


def mixed_manager(backend: Backend) -> SyncRunManager:
    """The creating side: knows both assistants (the workers each serve one). Its runs are
    due for the relay after an hour: a run found republished can only mean its first
    message went astray, not that a loaded machine was slow to drain the queue."""
    settings = backend.settings.with_overrides(republish_after=3600)
    app = create_app(settings, name=f"both-{uuid.uuid4().hex[:6]}")
    assistant(app, "tool")(routing_apps.tool)
    assistant(app, "draft")(routing_apps.draft)
    return SyncRunManager(app)


def serving(backend: Backend, app: str, log: Path, **options) -> WorkerProcess:  # noqa: ANN003
    settings = backend.settings.with_overrides(app=f"tests.routing_apps:{app}", imports="")
    return WorkerProcess(settings, log, **options)


def test_two_workers_with_disjoint_assistants_each_get_only_their_runs(backend, tmp_path):
    """200 runs alternating between two assistants, each served by one worker of its own:
    every run executes on the worker that serves it, none is discarded as unregistered, and
    none waited for the relay (published once: publish_count 0)."""
    manager = mixed_manager(backend)
    tools = serving(backend, "tools", tmp_path / "tools.log", name="tools").start()
    drafts = serving(backend, "drafts", tmp_path / "drafts.log", name="drafts").start()
    try:
        runs = [
            manager.create_or_reject(f"mix-{n}-{uuid.uuid4().hex[:6]}", name, kwargs={"n": n})
            for n, name in zip(range(200), ["tool", "draft"] * 100, strict=True)
        ]
        done = [manager.join(run.run_id, timeout=60) for run in runs]
        logs = tools.log() + drafts.log()
    finally:
        tools.stop()
        drafts.stop()
    assert [run.status for run in done] == [RunStatus.success] * 200
    assert [run.result for run in done] == [{run.assistant_id: n} for n, run in enumerate(runs)]
    assert {run.worker.split("-")[0] for run in done if run.assistant_id == "tool"} == {"tools"}
    assert {run.worker.split("-")[0] for run in done if run.assistant_id == "draft"} == {"drafts"}
    assert "unregistered task" not in logs
    assert republished(manager, runs) == []
    for run in runs[:10]:
        assert not [
            event for event in manager.events(run.run_id) if "serve" in (event.detail or "")
        ]


def test_a_run_waits_for_a_worker_of_its_assistant_and_starts_when_one_comes(backend, tmp_path):
    """With only the other assistant's worker up, the run stays queued in its own queue (that
    worker never takes it); a worker that serves it, started later, takes it at once."""
    manager = mixed_manager(backend)
    tools = serving(backend, "tools", tmp_path / "tools.log", name="tools").start()
    drafts = serving(backend, "drafts", tmp_path / "drafts.log", name="drafts")
    try:
        run = manager.create_or_reject(f"late-{uuid.uuid4().hex[:6]}", "draft", kwargs={"n": 7})
        time.sleep(2.0)  # the tools worker polls its own queue meanwhile
        assert manager.get(run.run_id).status is RunStatus.pending
        assert run.run_id not in tools.log()
        drafts.start()
        assert manager.join(run.run_id, timeout=30).result == {"draft": 7}
    finally:
        tools.stop()
        drafts.stop()
    assert manager.get(run.run_id).worker.startswith("drafts-")


def test_workers_started_without_a_name_on_one_host_are_two_workers(backend, tmp_path):
    """`runqueue worker` twice on one host, no --hostname: two node names, both listed live
    with their own assistants (Celery's default name, celery@HOST, was one for both)."""
    started = [_plain_worker(backend, app, tmp_path / f"{app}.log") for app in ("tools", "drafts")]
    try:
        wait_until(
            lambda: all(" ready." in log.read_text() for _, log in started),
            60,
            message="both ready",
        )
        listed = run_cli(settings_env(backend.settings), "workers", "--json")
    finally:
        for process, _ in started:
            _stop(process)
    assert listed.returncode == 0, listed.stderr
    workers = {worker["name"]: worker for worker in json.loads(listed.stdout)}
    pids = {process.pid for process, _ in started}
    ours = [worker for worker in workers.values() if worker["pid"] in pids]
    assert sorted(worker["assistants"] for worker in ours) == [["draft"], ["tool"]]
    assert len({worker["name"] for worker in ours}) == 2
    assert all(worker["name"].startswith(f"runqueue-{worker['pid']}@") for worker in ours)


def test_a_second_worker_with_a_live_workers_name_is_refused(backend, tmp_path):
    name = f"twin-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    first, first_log = _plain_worker(backend, "tools", tmp_path / "first.log", name)
    try:
        wait_until(lambda: " ready." in first_log.read_text(), 60, message="the first worker ready")
        second, second_log = _plain_worker(backend, "drafts", tmp_path / "second.log", name)
        try:
            code = second.wait(timeout=60)
        finally:
            _stop(second)
        said = second_log.read_text()
    finally:
        _stop(first)
    assert code != 0
    assert f"a live worker is already named {name} (pid {first.pid} on " in said
    assert "give this one another name with --hostname/-n" in said
    assert " ready." not in said


def _plain_worker(
    backend: Backend, app: str, log: Path, name: str | None = None
) -> tuple[subprocess.Popen, Path]:
    settings = backend.settings.with_overrides(app=f"tests.routing_apps:{app}", imports="")
    command = [sys.executable, "-m", "runqueue", "worker", "--concurrency=1"]
    if name:
        command.append(f"--hostname={name}")
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def two_deployments(tmp_path: Path) -> Iterator[tuple[Backend, Backend]]:
    """Two deployments (each its own PostgreSQL database) on one Redis broker with the same
    Settings.queue, as a stale staging worker with a copied `.env` would be. (An embedded
    deployment's broker is its own data directory: none shares it.)"""
    require_services()
    ours = make_backend("postgres_redis", tmp_path / "ours")
    other = make_backend("postgres_redis", tmp_path / "other")
    other.settings = other.settings.with_overrides(
        broker_url=ours.settings.broker_url, queue=ours.settings.queue
    )
    yield ours, other
    other.close()
    ours.close()


def test_a_worker_of_another_deployment_never_takes_this_ones_runs(two_deployments, tmp_path):
    """The other deployment's worker is the only one up when the runs are created; it takes
    none of them (their queue is named from this database), and this deployment's worker,
    once started, runs them all without a republish."""
    backend, other = two_deployments
    # The relay republishes a run unclaimed for republish_after (the test backends' is short):
    # on a loaded machine this worker may start later than that (CI of stop 33). An hour
    # here, so that a run can only have run from its first message.
    manager = backend.manager(republish_after=3600)
    foreign = WorkerProcess(other.settings, tmp_path / "foreign.log").start()
    try:
        runs = [manager.create_or_reject(f"dep-{uuid.uuid4().hex[:8]}", "echo") for _ in range(5)]
        time.sleep(2.0)
        assert [manager.get(run.run_id).status for run in runs] == [RunStatus.pending] * 5
        own = WorkerProcess(backend.settings, tmp_path / "own.log").start()
        try:
            done = [manager.join(run.run_id, timeout=30) for run in runs]
        finally:
            own.stop()
        foreign_log = foreign.log()
    finally:
        foreign.stop()
    assert [run.status for run in done] == [RunStatus.success] * 5
    assert not any(run.run_id in foreign_log for run in runs)
    assert republished(manager, runs) == []


def republished(manager: SyncRunManager, runs: list) -> list[str]:
    """The runs the relay published again (publish_count > 0): none, when routing works."""
    with manager.store.transaction() as conn:
        return (
            conn.execute(
                select(Run.run_id).where(
                    Run.run_id.in_([run.run_id for run in runs]), Run.publish_count > 0
                )
            )
            .scalars()
            .all()
        )


def test_a_run_of_another_deployment_is_named_at_error_not_skipped_quietly(backend, tmp_path):
    """A message stamped by another deployment, in this deployment's queue (only a -Q given
    by hand can bring one): its run is unknown to this database, and the worker says why in
    one ERROR line naming both deployments and the queue, not an INFO `missing`."""
    manager = backend.manager()
    queue_name = queue_of(manager, "echo")
    worker = WorkerProcess(backend.settings, tmp_path / "worker.log").start()
    try:
        run_id = str(uuid.uuid4())
        queue = Queue(queue_name, Exchange(queue_name), routing_key=queue_name)
        with manager.app.connection_for_write() as connection:
            connection.Producer(serializer="json").publish(
                [["t-elsewhere"], {}, {}],
                exchange=queue.exchange,
                routing_key=queue_name,
                declare=[queue],
                headers={
                    "lang": "py",
                    "task": "echo",
                    "id": run_id,
                    "root_id": run_id,
                    "runqueue_deployment": "elsewhere01",
                },
            )
        wait_until(lambda: run_id in worker.log(), 30, message="the worker took it")
        time.sleep(0.5)
        said = [line for line in worker.log().splitlines() if run_id in line]
    finally:
        worker.stop()
    assert any(
        "ERROR" in line
        and f"run {run_id} was published by deployment elsewhere01, but this worker's "
        f"database is deployment {manager.runtime.deployment_id}'s: two deployments share "
        f"broker queue {queue_name}"
        in line
        for line in said
    ), said
    assert not any("not started: missing" in line for line in said)

"""Flower, as `runqueue flower` starts it, shows every run's status: runs skipped at claim,
held runs, interrupts and rollbacks, and a terminate from Flower is a cancel. PostgreSQL +
Redis, a real prefork worker, Flower as a real process with basic auth."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runqueue import RunStatus
from runqueue.celery.dispatch import publish
from runqueue.journal import Journal
from tests.conftest import require_services
from tests.support import (
    FLOWER_COMMAND,
    HEALTH_COMMAND,
    REPO_ROOT,
    Backend,
    RunFactory,
    WorkerProcess,
    as_process,
    checkout_path,
    make_backend,
    settings_env,
    wait_until,
)

USER, PASSWORD = "operator", "flower-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Flower:
    """A running Flower: its URL, its process, and an HTTP client with or without the
    credentials."""

    url: str
    process: subprocess.Popen

    def request(
        self, path: str, *, method: str = "GET", credentials: tuple[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        if method == "POST":
            request.data = b""
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode(errors="replace")
        except OSError:
            return 0, None
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    def get(self, path: str) -> Any:
        status, body = self.request(path, credentials=(USER, PASSWORD))
        return body if status == 200 else None

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks") or {}

    def task_in(
        self, run_id: str, state: str, timeout: float = 30, exception: str | None = None
    ) -> dict[str, Any]:
        """The run as Flower's task list has it, once in `state` (with this exception)."""
        return wait_until(
            lambda: (
                (task := self.tasks().get(run_id))
                and task["state"] == state
                and (exception is None or task.get("exception") == exception)
                and task
            ),
            timeout=timeout,
            message=f"flower to show run {run_id} {state} (now: {self.tasks().get(run_id)})",
        )


def flower_environment(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(settings_env)
    env["FLOWER_BASIC_AUTH"] = f"{USER}:{PASSWORD}"
    # Both must be dropped by `runqueue flower`: the API stays closed, and no password leaks.
    env["FLOWER_UNAUTHENTICATED_API"] = "1"
    env["PGPASSWORD"] = "database-secret"
    return env


@pytest.fixture(scope="module")
def flower_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    require_services()
    backend = make_backend("postgres_redis", tmp_path_factory.mktemp("flower"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def flower_worker(flower_backend: Backend, tmp_path_factory: pytest.TempPathFactory):
    log = Path(tmp_path_factory.mktemp("flower-worker")) / "worker.log"
    process = WorkerProcess(flower_backend.settings, log, concurrency=2).start()
    yield process
    process.stop()


@contextlib.contextmanager
def running_flower(backend: Backend, log_path: Path, *options: str) -> Iterator[Flower]:
    """Flower exactly as the deployment starts it (`runqueue flower`, basic auth), on a free
    loopback port, once its event receiver has seen a worker (so no run event is missed)."""
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*as_process(FLOWER_COMMAND), f"--port={port}", *options],
        env=flower_environment(settings_env(backend.settings)),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Flower(f"http://127.0.0.1:{port}", process)
    try:
        wait_until(lambda: running.request("/healthcheck")[1] == "OK", 30, message="flower")
        wait_until(
            lambda: any((running.get("/api/workers?status=1") or {}).values()),
            timeout=30,
            message="flower to receive the worker's events",
        )
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        print(f"flower log: {log_path}")


@pytest.fixture(scope="module")
def flower(
    flower_backend: Backend, flower_worker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flower]:
    log_path = Path(tmp_path_factory.mktemp("flower")) / "flower.log"
    with running_flower(flower_backend, log_path) as running:
        yield running


@pytest.fixture(scope="module")
def manager(flower_backend: Backend):
    return flower_backend.manager()


@pytest.fixture
def runs(manager, tmp_path: Path) -> RunFactory:  # noqa: ANN001
    return RunFactory(manager, Journal(tmp_path / "journal.jsonl"))


def _thread() -> str:
    return f"flower-{uuid.uuid4().hex[:8]}"


def _running(manager, run_id: str) -> None:  # noqa: ANN001
    wait_until(
        lambda: manager.get(run_id).status is RunStatus.running, 30, message=f"{run_id} running"
    )


def test_a_success_shows_its_thread_and_hides_its_payload(manager, flower):
    thread_id = _thread()
    run = manager.create_or_reject(thread_id, "echo", kwargs={"question": "secret question"})
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success

    task = flower.task_in(run.run_id, "SUCCESS")
    assert task["name"] == "echo"
    assert task["args"] == f"thread={thread_id}"
    assert "secret question" not in json.dumps(task)  # neither kwargs nor result
    assert "hidden" in task["kwargs"] and "hidden" in task["result"]


def test_a_held_run_shows_at_once_then_runs(manager, runs, flower):
    thread_id = _thread()
    first = runs(thread_id, steps=10, delay=0.2)
    held = runs(thread_id, strategy="enqueue", steps=1, delay=0)
    assert manager.get(held.run_id).status is RunStatus.pending

    task = flower.task_in(held.run_id, "PENDING", timeout=5)
    assert task["args"] == f"thread={thread_id} (held)"
    assert manager.get(first.run_id).status in (RunStatus.pending, RunStatus.running)

    assert manager.join(held.run_id, timeout=30).status is RunStatus.success
    task = flower.task_in(held.run_id, "SUCCESS")
    assert task["args"] == f"thread={thread_id}"


def test_a_delayed_run_shows_at_once_with_its_due_time_then_runs(manager, flower):
    thread_id = _thread()
    delayed = manager.create_or_reject(thread_id, "echo", after=3.0)
    due = delayed.due_at.isoformat()

    task = flower.task_in(delayed.run_id, "PENDING", timeout=5)
    assert task["args"] == f"thread={thread_id} (delayed until {due})"
    assert task["eta"] == due
    assert manager.get(delayed.run_id).status is RunStatus.pending

    run = manager.join(delayed.run_id, timeout=30)
    assert run.status is RunStatus.success and run.started_at >= run.due_at
    task = flower.task_in(delayed.run_id, "SUCCESS")
    assert task["args"] == f"thread={thread_id}"


def test_a_delivery_parked_behind_its_thread_is_retry_then_runs(
    manager, runs, flower, flower_worker
):
    thread_id = _thread()
    first = runs(thread_id, steps=15, delay=0.2)
    held = runs(thread_id, strategy="enqueue", steps=1, delay=0)
    _running(manager, first.run_id)
    assert publish(
        manager.app, manager.runtime, held
    )  # a stray delivery of the held run: its thread is busy
    wait_until(
        lambda: f"run {held.run_id} not started: held" in flower_worker.log(),
        timeout=30,
        message="the worker to park the run",
    )
    task = flower.task_in(held.run_id, "RETRY", timeout=10)
    assert task["exception"].startswith(f"held: thread {thread_id} has a running run")

    # Released when the first run ends, published and run: RETRY gives way to its events.
    assert manager.join(held.run_id, timeout=30).status is RunStatus.success
    flower.task_in(held.run_id, "SUCCESS")


def test_runs_cancelled_before_start_end_revoked(manager, runs, flower, flower_worker):
    # Held: never published, so no worker ever sees it.
    thread_id = _thread()
    first = runs(thread_id, steps=10, delay=0.2)
    held = runs(thread_id, strategy="enqueue", steps=1, delay=0)
    assert manager.cancel(held.run_id) is True
    flower.task_in(
        held.run_id,
        "REVOKED",
        timeout=10,
        exception="interrupted: cancelled before start (interrupt)",
    )

    # Queued while both pool processes are busy: its message waits in the broker, and the
    # worker that finally receives it skips it at claim.
    second = runs(_thread(), steps=10, delay=0.2)
    _running(manager, first.run_id)
    _running(manager, second.run_id)
    queued = runs(_thread(), steps=1, delay=0)
    assert manager.cancel(queued.run_id, action="rollback") is True
    assert manager.join(first.run_id, timeout=30).status is RunStatus.success
    wait_until(
        lambda: f"run {queued.run_id} not started: finished" in flower_worker.log(),
        timeout=30,
        message="the worker to skip the cancelled run",
    )
    time.sleep(1)  # the skip's events have reached Flower
    flower.task_in(
        queued.run_id,
        "REVOKED",
        timeout=10,
        exception="interrupted: cancelled before start (rollback)",
    )


def test_a_duplicate_delivery_leaves_the_run_as_it_ended(
    manager, flower, flower_backend, flower_worker, tmp_path
):
    thread_id = _thread()
    run = manager.create_or_reject(thread_id, "echo")
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    ended = flower.task_in(run.run_id, "SUCCESS")

    # A second Flower, started after the run ended, sees only the duplicate's events.
    with running_flower(flower_backend, tmp_path / "late-flower.log") as late_flower:
        assert publish(
            manager.app, manager.runtime, run
        )  # the very same message again (same task id)
        wait_until(
            lambda: f"run {run.run_id} not started: finished" in flower_worker.log(),
            timeout=30,
            message="the duplicate to be skipped",
        )
        time.sleep(1)  # the duplicate's events have reached both
        task = flower.task_in(run.run_id, "SUCCESS", timeout=5)
        assert task["succeeded"] == pytest.approx(ended["succeeded"], abs=0.5)
        assert task["args"] == f"thread={thread_id}"
        late = late_flower.task_in(run.run_id, "SUCCESS", timeout=5)  # not STARTED forever
        assert late["succeeded"] == pytest.approx(ended["succeeded"], abs=1.0)


def test_interrupt_and_rollback_are_told_apart(manager, runs, flower):
    interrupted = runs(_thread(), steps=50, delay=0.2)
    _running(manager, interrupted.run_id)
    flower.task_in(interrupted.run_id, "STARTED")
    assert manager.cancel(interrupted.run_id) is True
    assert manager.join(interrupted.run_id, timeout=30).status is RunStatus.interrupted
    flower.task_in(interrupted.run_id, "REVOKED", exception="interrupted: cancelled (interrupt)")

    thread_id = _thread()
    rolled_back = runs(thread_id, steps=50, delay=0.2)
    _running(manager, rolled_back.run_id)
    newer = runs(thread_id, strategy="rollback", steps=1, delay=0)
    assert manager.join(rolled_back.run_id, timeout=30).status is RunStatus.interrupted
    flower.task_in(rolled_back.run_id, "REVOKED", exception="interrupted: cancelled (rollback)")
    assert manager.join(newer.run_id, timeout=30).status is RunStatus.success
    flower.task_in(newer.run_id, "SUCCESS")


def test_terminate_from_flower_is_a_cancel(manager, runs, flower):
    thread_id = _thread()
    run = runs(thread_id, steps=100, delay=0.2)
    _running(manager, run.run_id)
    following = runs(thread_id, strategy="enqueue", steps=1, delay=0)

    status, _ = flower.request(
        f"/api/task/revoke/{run.run_id}?terminate=true",
        method="POST",
        credentials=(USER, PASSWORD),
    )
    assert status == 200
    started = time.monotonic()
    wait_until(
        lambda: manager.get(run.run_id).status is RunStatus.interrupted,
        timeout=2,
        interval=0.02,
        message="the terminated run to read interrupted",
    )
    print(f"terminate -> interrupted in {time.monotonic() - started:.2f}s")
    assert manager.get(run.run_id).abort_action.value == "interrupt"
    assert manager.join(following.run_id, timeout=30).status is RunStatus.success
    flower.task_in(run.run_id, "REVOKED", exception="interrupted: cancelled (interrupt)")


@pytest.mark.parametrize(
    "path",
    ["/", "/tasks", "/workers", "/api/tasks", "/api/workers", "/api/task/info/x", "/metrics"],
)
def test_no_credentials_no_flower(flower, path):
    assert flower.request(path)[0] == 401
    assert flower.request(path, credentials=(USER, "wrong"))[0] == 401
    assert flower.request(path, credentials=(USER, PASSWORD))[0] in (200, 404)


def test_revoke_needs_credentials(flower):
    status, _ = flower.request(f"/api/task/revoke/{uuid.uuid4()}", method="POST")
    assert status == 401


def test_flower_gets_no_database_url(flower, flower_backend):
    environ = Path(f"/proc/{flower.process.pid}/environ").read_bytes().decode(errors="replace")
    variables = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
    assert "RUNQUEUE_DATABASE_URL" not in variables
    assert flower_backend.settings.database_url not in environ
    assert "database-secret" not in environ
    assert "FLOWER_UNAUTHENTICATED_API" not in variables
    assert variables["RUNQUEUE_BROKER_URL"] == flower_backend.settings.broker_url
    cmdline = Path(f"/proc/{flower.process.pid}/cmdline").read_bytes().decode()
    assert "flower" in cmdline and PASSWORD not in cmdline


@pytest.mark.parametrize(
    ("options", "says"),
    [([], "needs authentication"), (["--no-auth", "--address=0.0.0.0"], "not a loopback")],
)
def test_flower_refuses_to_start_open(flower_backend, options, says):
    env = {k: v for k, v in settings_env(flower_backend.settings).items()}
    for name in [name for name in env if name.startswith("FLOWER_")]:
        del env[name]
    env["FLOWER_UNAUTHENTICATED_API"] = "1"  # no way around it
    done = subprocess.run(
        [*as_process(FLOWER_COMMAND), *options],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr


def test_no_auth_is_allowed_on_loopback_only_and_keeps_the_api_closed(flower_backend, tmp_path):
    port = free_port()
    env = {k: v for k, v in settings_env(flower_backend.settings).items()}
    env.pop("FLOWER_BASIC_AUTH", None)
    env["FLOWER_UNAUTHENTICATED_API"] = "1"
    with (tmp_path / "flower.log").open("wb") as log:
        process = subprocess.Popen(
            [*as_process(FLOWER_COMMAND), "--no-auth", f"--port={port}"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            open_flower = Flower(f"http://127.0.0.1:{port}", process)
            wait_until(lambda: open_flower.request("/healthcheck")[1] == "OK", 30, message="up")
            assert open_flower.request("/api/tasks")[0] == 401  # the API never opens
        finally:
            process.terminate()
            process.wait(10)


def test_the_compose_health_check_passes_in_flowers_own_environment(
    flower_backend, flower, tmp_path
):
    """Flower's container has the broker and its auth, no database: its health check
    (`runqueue health --url .../healthcheck`) must pass there, and create nothing."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "RUNQUEUE_BROKER_URL": flower_backend.settings.broker_url,
        "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}",
        **checkout_path(),
    }
    done = subprocess.run(
        as_process([*HEALTH_COMMAND, "--url", f"{flower.url}/healthcheck"]),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok: {flower.url}/healthcheck"
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("auth", ["admin:", ":", "admin:secret,:"])
def test_flower_refuses_basic_auth_with_an_empty_user_or_password(flower_backend, auth):
    env = flower_environment(settings_env(flower_backend.settings)) | {"FLOWER_BASIC_AUTH": auth}
    done = subprocess.run(
        as_process([*FLOWER_COMMAND, f"--port={free_port()}"]),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: FLOWER_BASIC_AUTH must be user:password pairs, comma-separated, each with a "
        "user and a password (an empty one lets anyone in)"
    ]


def _cli(backend: Backend, *arguments: str) -> str:
    """A `runqueue` command as an operator types it (its own process); its output."""
    finished = subprocess.run(
        as_process(["runqueue", *arguments]),
        env=settings_env(backend.settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return finished.stdout


def _submit(backend: Backend, thread_id: str, *options: str, **kwargs: Any) -> dict[str, Any]:
    """`runqueue submit steps --thread T --kwargs ...`: the run it printed."""
    arguments = ["submit", "steps", f"--thread={thread_id}", *options]
    return json.loads(_cli(backend, *arguments, f"--kwargs={json.dumps(kwargs)}"))


def test_a_cli_process_is_never_an_online_worker(flower_backend, flower_worker, tmp_path):
    """A process that is not a worker sends task events too (a cancel's end); Celery's state
    counts any task event but task-sent as a heartbeat of its sender, so Flower listed the
    CLI (`runqueue@HOST`) as an online worker for two minutes after it."""
    cli_node = f"runqueue@{socket.gethostname()}"
    journal = str(tmp_path / "journal.jsonl")
    thread_id = _thread()
    with running_flower(flower_backend, tmp_path / "flower.log") as fresh:  # no earlier events
        first = _submit(flower_backend, thread_id, steps=40, delay=0.25, journal=journal)
        held = _submit(flower_backend, thread_id, "--strategy=enqueue", steps=1, journal=journal)
        fresh.task_in(held["run_id"], "PENDING", timeout=10)  # the CLI's task-sent (held)
        _cli(flower_backend, "cancel", held["run_id"])
        # The end of a run nobody started is the CLI's own event.
        fresh.task_in(
            held["run_id"],
            "REVOKED",
            timeout=10,
            exception="interrupted: cancelled before start (interrupt)",
        )
        fresh.task_in(first["run_id"], "STARTED", timeout=30)
        time.sleep(1)  # whatever the CLI sent has reached Flower
        online = fresh.get("/api/workers?status=1")
        assert any(alive for name, alive in online.items() if name != cli_node)  # the worker
        assert online.get(cli_node) is not True, online  # offline, or not listed
        page = fresh.get("/workers?json=1")
        listed = {worker["hostname"]: worker["status"] for worker in page["data"]}
        assert listed.get(cli_node) is not True, listed

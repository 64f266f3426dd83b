"""Flower sees the fleet and every run: run id as task id, thread id in the task's args."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunStatus
from tests.support import FLOWER_COMMAND, REPO_ROOT, as_process, settings_env, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def flower(backend, worker, tmp_path: Path) -> Iterator[str]:
    """Flower exactly as the deployment starts it, on a free loopback port, once its event
    receiver is consuming (it has seen the worker's heartbeat), so no run event is missed."""
    port = free_port()
    env = settings_env(backend.settings)
    env["FLOWER_UNAUTHENTICATED_API"] = "1"
    log = (tmp_path / "flower.log").open("wb")
    process = subprocess.Popen(
        [*as_process(FLOWER_COMMAND), f"--port={port}", "--address=127.0.0.1"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{url}/healthcheck") == "OK", timeout=30, message="flower")
        wait_until(
            lambda: any((_get(f"{url}/api/workers?status=1") or {}).values()),
            timeout=30,
            message="flower to receive the worker's events",
        )
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read().decode()
    except OSError:
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return body


def test_flower_shows_the_run_and_its_thread(manager, worker, flower):
    thread_id = f"flower-{uuid.uuid4().hex[:8]}"
    run = manager.create_or_reject(thread_id, "echo", kwargs={"question": "hi"})
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success

    task = wait_until(
        lambda: (
            (info := _get(f"{flower}/api/task/info/{run.run_id}"))
            and isinstance(info, dict)
            and info.get("state") == "SUCCESS"
            and info
        ),
        timeout=30,
        message="flower to record the run",
    )
    assert task["uuid"] == run.run_id
    assert task["name"] == "echo"
    assert thread_id in task["args"]
    assert "question" in task["kwargs"]
    workers = wait_until(
        lambda: _get(f"{flower}/api/workers?refresh=1"),
        timeout=30,
        message="flower to list the fleet",
    )
    assert any(name.startswith("w") for name in workers), workers

"""Flower's task list in a real browser (headless Chromium): with the credentials, the page
loads its rows (by AJAX) and shows a run's thread without opening the task. The screenshot
is kept as an artifact (its path is printed). In CI a missing Chromium fails the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from runqueue import RunStatus
from tests.integration.test_flower import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    flower,
    flower_backend,
    flower_worker,
    manager,
)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = f"no headless browser found ({', '.join(BROWSERS)}); apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def headless(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """One headless Chromium run on `url`, given time for the page's AJAX to load."""
    return subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1600,900",
            "--virtual-time-budget=8000",
            *action,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_the_tasks_page_shows_a_runs_thread(manager, flower, tmp_path):  # noqa: F811
    thread_id = f"browser-{uuid.uuid4().hex[:8]}"
    run = manager.create_or_reject(thread_id, "echo", kwargs={"question": "private words"})
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    flower.task_in(run.run_id, "SUCCESS")

    address = flower.url.removeprefix("http://")
    url = f"http://{USER}:{PASSWORD}@{address}/tasks"
    page = headless(url, tmp_path / "profile-dom", "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    assert run.run_id in page.stdout, page.stdout[-3000:]
    assert f"thread={thread_id}" in page.stdout  # the args column, without opening the task
    assert "private words" not in page.stdout

    screenshot = tmp_path / "flower-tasks.png"
    shot = headless(url, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


def test_the_tasks_page_needs_the_credentials(flower, tmp_path):  # noqa: F811
    address = flower.url.removeprefix("http://")
    page = headless(f"http://{address}/tasks", tmp_path / "profile", "--dump-dom")
    assert "thread=" not in page.stdout
    # Flower answers 401; Chromium reports the page as refused (or shows Flower's 401 body).
    refused = "ERR_INVALID_AUTH_CREDENTIALS" in page.stderr or "Access denied" in page.stdout
    assert refused, (page.stdout[-1000:], page.stderr[-1000:])

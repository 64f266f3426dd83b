"""The task bodies both sides run: runqueue assistants and the raw-Celery baseline.

Each body proves it ran by appending one line (task id, time, pid) to a stamp file, so the
benchmark sees a raw task start without a result backend. The same append runs on both
sides wherever a start time is measured; the throughput no-op of runqueue writes nothing
(its completion is the final status in the database).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

from runqueue import RunContext, Settings, assistant
from runqueue.celery.app import configure_filesystem_broker

RAW_NOOP = "bench_raw_noop"
RAW_STAMP = "bench_raw_stamp"
RAW_SLEEP = "bench_raw_sleep"
STAMP = "bench_stamp"
SLEEP = "bench_sleep"


def stamp(path: str, task_id: str, started: float) -> None:
    """One line per started task; O_APPEND keeps lines from concurrent children whole."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id} {started:.6f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_stamps(path: Path) -> dict[str, tuple[float, int]]:
    """task id -> (start time, pid) for every stamped task."""
    if not path.exists():
        return {}
    stamps = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            stamps[parts[0]] = (float(parts[1]), int(parts[2]))
    return stamps


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


# -- runqueue assistants ------------------------------------------------------------------


def bench_stamp(context: RunContext, path: str) -> None:
    """A no-op that records when the assistant's own code began."""
    stamp(path, context.run_id, time.time())


def bench_sleep(context: RunContext, path: str, seconds: float = 60.0) -> None:
    """A long run, to be cancelled; its stamp carries the pid to watch."""
    stamp(path, context.run_id, time.time())
    _sleep(seconds)


def register_bench_assistants(app: Celery) -> None:
    assistant(app, name=STAMP)(bench_stamp)
    assistant(app, name=SLEEP)(bench_sleep)


# -- the raw-Celery baseline ----------------------------------------------------------------


def raw_noop(task: Any, path: str) -> None:
    stamp(path, task.request.id, time.time())


def raw_stamp(task: Any, path: str) -> None:
    stamp(path, task.request.id, time.time())


def raw_sleep(task: Any, path: str, seconds: float = 60.0) -> None:
    stamp(path, task.request.id, time.time())
    _sleep(seconds)


def create_raw_app(settings: Settings) -> Celery:
    """Plain Celery on runqueue's broker, with the delivery settings runqueue uses (late acks,
    prefetch 1, JSON) and nothing else: no database, no signals, no result backend."""
    app = Celery("baseline", broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )
    if settings.is_embedded_broker:
        configure_filesystem_broker(app, settings)  # the same transport options as runqueue
    else:
        app.conf.broker_transport_options = {"visibility_timeout": 3600}

    app.task(name=RAW_NOOP, bind=True, shared=False)(raw_noop)
    app.task(name=RAW_STAMP, bind=True, shared=False)(raw_stamp)
    app.task(name=RAW_SLEEP, bind=True, shared=False)(raw_sleep)
    return app

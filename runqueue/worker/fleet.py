"""The worker's place in the fleet, run by its main process: readiness before it says ready,
its row in the `workers` table (registered, heartbeated, marked stopped), the grace period of
a warm shutdown, and the run history line when it gets a run of an assistant it lacks.

Graceful shutdown: SIGTERM to the main process is Celery's warm shutdown (no new runs; the
pool waits for its running runs). After Settings.shutdown_grace_seconds, the runs still
executing are handed back: their pool children get SIGTERM, find no cancel recorded and put
the run back to pending for another worker (execution.RunTask.__call__). Celery's soft
shutdown (worker_soft_shutdown_timeout) is not used: it sleeps the whole timeout even once
the runs have finished, and only on a cold shutdown (SIGQUIT, or REMAP_SIGTERM set in the
environment before billiard is imported), which exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from typing import Any

from celery import Celery, bootsteps, signals
from celery.worker import state as worker_state

from runqueue.app import runtime_of
from runqueue.worker.execution import RunTask
from runqueue.worker.readiness import wait_until_ready

logger = logging.getLogger(__name__)

_members: dict[str, FleetMember] = {}  # node name -> this process's member of the fleet


def served_assistants(app: Celery) -> list[str]:
    """The assistants a worker of this app executes: its RunTask names."""
    return sorted(name for name, task in app.tasks.items() if isinstance(task, RunTask))


def _pool_name(worker: Any) -> str:
    pool = worker.pool_cls
    return getattr(pool, "__module__", str(pool)).rsplit(".", 1)[-1]  # prefork, thread, solo


class FleetMember:
    """One worker's record in the fleet, and its graceful-shutdown timer."""

    def __init__(self, worker: Any):
        self.app: Celery = worker.app
        self.name: str = worker.hostname
        self.pool, self.concurrency = _pool_name(worker), int(worker.concurrency or 1)
        self.settings = runtime_of(self.app).settings
        self.registered = False
        self._stopped = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="runqueue-fleet", daemon=True)
        self._grace: threading.Timer | None = None
        self._signalled: set[tuple[int, str]] = set()  # (child pid, run id) told to hand back

    def start(self) -> None:
        """Wait for database and broker (NotReadyError: Celery stops the worker, exit 1,
        before its consumer could print ready), then register and start heartbeating."""
        wait_until_ready(
            self.app,
            self.settings.ready_timeout,
            given_up=lambda: bool(worker_state.should_stop or worker_state.should_terminate),
        )
        self._register()
        self.registered = True
        _members[self.name] = self
        self._beat.start()

    def _register(self) -> None:
        runtime_of(self.app).store.register_worker(
            self.name,
            pool=self.pool,
            concurrency=self.concurrency,
            assistants=served_assistants(self.app),
            host=socket.gethostname(),
            pid=os.getpid(),
        )

    def stop(self) -> None:
        """The blueprint stops (the pool has yet to drain): the worker stays live, and keeps
        heartbeating, until worker_shutdown (close)."""

    def close(self) -> None:
        """The worker has shut down: stop heartbeating and say so in the table."""
        self._stopped.set()
        if self._grace is not None:
            self._grace.cancel()
        _members.pop(self.name, None)
        if not self.registered:
            return
        self.registered = False
        try:
            runtime_of(self.app).store.stop_worker(self.name, pid=os.getpid())
        except Exception as exc:  # the row then ages out: live only while it heartbeats
            logger.warning("could not mark worker %s stopped: %s", self.name, exc)

    def begin_grace(self) -> None:
        """A warm shutdown began: hand back what still runs when the grace period is over."""
        if self._grace is None:
            seconds = self.settings.shutdown_grace_seconds
            self._grace = threading.Timer(seconds, self.hand_back_running)
            self._grace.daemon = True
            self._grace.start()

    def hand_back_running(self) -> None:
        """SIGTERM the pool children still executing a run: each hands its run back. Then
        look again every second until the worker is down: a run the pool started from its
        buffer after the grace ended is handed back too."""
        for request in list(worker_state.active_requests):
            pid = request.worker_pid
            if not isinstance(request.task, RunTask) or not pid or pid == os.getpid():
                continue  # the threads and solo pools run in this process: nothing to signal
            if (pid, request.id) in self._signalled:
                continue
            self._signalled.add((pid, request.id))
            logger.warning(
                "shutdown grace of %gs over: handing back run %s",
                self.settings.shutdown_grace_seconds,
                request.id,
                extra={"run_id": request.id, "action": "hand_back"},
            )
            with contextlib.suppress(ProcessLookupError):  # the child ended meanwhile
                os.kill(pid, signal.SIGTERM)
        if not self._stopped.is_set():
            self._grace = threading.Timer(1.0, self.hand_back_running)
            self._grace.daemon = True
            self._grace.start()

    def _heartbeat(self) -> None:
        store = runtime_of(self.app).store
        while not self._stopped.wait(self.settings.heartbeat_interval):
            try:
                if not store.beat_worker(self.name):
                    # Marked stopped by another process under this node name (or by hand)
                    # while this one runs: it is live, so it says so again.
                    self._register()
            except Exception as exc:  # a database blip: beat again next time
                logger.warning("worker heartbeat failed: %s", exc)


class FleetStep(bootsteps.StartStopStep):
    """The worker's bootstep for FleetMember: ready check and registration at start."""

    label = "runqueue fleet"
    requires = ("celery.worker.components:Pool",)

    def create(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return FleetMember(worker)


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(sender: Any = None, how: str = "", **_: Any) -> None:
    """In the main process's SIGTERM handler: start the grace period (a cold shutdown
    cancels the runs at once; their children hand them back all the same)."""
    member = _members.get(str(sender))
    if member is not None and how == "Warm":
        member.begin_grace()


@signals.worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """After the pool drained: the worker is gone."""
    member = _members.get(getattr(sender, "hostname", ""))
    if member is not None:
        member.close()


@signals.task_unknown.connect
def _on_task_unknown(
    sender: Any = None, name: str | None = None, id: str | None = None, **_: Any
) -> None:
    """Celery discards a message for a task this worker lacks ("unregistered task"): say so
    in the run's history, so a run that never starts shows why."""
    runtime = getattr(getattr(sender, "app", None), "runqueue", None)
    if runtime is None or id is None:
        return
    worker = getattr(sender, "hostname", None) or "?"
    detail = f"worker {worker} does not serve assistant {name}"
    try:
        noted = runtime.store.note_on_pending_run(id, detail, worker=worker, discarded=True)
    except Exception as exc:  # the database is down: the log line below still says it
        logger.warning("could not note run %s: %s", id, exc, extra={"run_id": id})
        noted = False
    if noted:
        logger.warning("run %s: %s", id, detail, extra={"run_id": id, "action": "unserved"})

"""The worker's place in the fleet, run by its main process: readiness before it says ready,
its row in the `workers` table (registered, heartbeated, marked stopped), the grace period of
a warm shutdown, and the run history line when it gets a run of an assistant it lacks.

Graceful shutdown: SIGTERM to the main process is Celery's warm shutdown (no new runs; the
pool waits for its running runs). After Settings.shutdown_grace_seconds, the runs still
executing are handed back: their pool children get SIGTERM, find no cancel recorded and put
the run back to pending for another worker (attempt.Attempt.after_sigterm). Celery's soft
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

from runqueue.celery.app import runtime_of
from runqueue.errors import DuplicateWorkerError
from runqueue.runtime import Runtime
from runqueue.worker.queues import consume_served_queues, served_assistants
from runqueue.worker.readiness import wait_until_ready
from runqueue.worker.task import RunTask

logger = logging.getLogger(__name__)

_members: dict[str, FleetMember] = {}  # node name -> this process's member of the fleet


def _pool_name(worker: Any) -> str:
    pool = worker.pool_cls
    return getattr(pool, "__module__", str(pool)).rsplit(".", 1)[-1]  # prefork, thread, solo


class FleetMember:
    """One worker's record in the fleet, and its graceful-shutdown timer."""

    def __init__(self, worker: Any, runtime: Runtime):
        self.app: Celery = worker.app
        self.worker = worker
        self.runtime = runtime
        self.name: str = worker.hostname
        self.pool, self.concurrency = _pool_name(worker), int(worker.concurrency or 1)
        self.settings = runtime.settings
        self.registered = False
        self._stopped = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="runqueue-fleet", daemon=True)
        self._grace: threading.Timer | None = None
        self._signalled: set[tuple[int, str]] = set()  # (child pid, run id) told to hand back

    def start(self) -> None:
        """Wait for database and broker (NotReadyError: Celery stops the worker, exit 1,
        before its consumer could print ready), refuse a node name a live worker has
        (DuplicateWorkerError), choose the queues to consume, then register and start
        heartbeating."""
        wait_until_ready(
            self.app,
            self.settings,
            self.settings.ready_timeout,
            given_up=lambda: bool(worker_state.should_stop or worker_state.should_terminate),
        )
        consume_served_queues(self.worker, self.runtime)
        self._register_refusing_a_live_namesake()
        self.registered = True
        _members[self.name] = self
        self._beat.start()

    def _register_refusing_a_live_namesake(self) -> None:
        """Two workers under one node name would be one row in the workers table and one
        worker in Flower: the second is refused (DuplicateWorkerError), by a guarded upsert.
        A row whose process is gone (same host, no such pid: a worker killed and restarted
        at once) is not a namesake: taken over."""
        store, live = self.runtime.store, self.settings.lease_seconds
        other = store.live_worker_named(self.name, live)
        gone = other is not None and other.host == socket.gethostname()
        gone = gone and not _pid_alive(other.pid)
        if self._register(unless_live_for=None if gone else live):
            return
        other = store.live_worker_named(self.name, live) or other
        holder = f" (pid {other.pid} on {other.host})" if other is not None else ""
        message = (
            f"a live worker is already named {self.name}{holder}: "
            "give this one another name with --hostname/-n"
        )
        logger.error(message)
        raise DuplicateWorkerError(message)

    def _register(self, unless_live_for: float | None = None) -> bool:
        return self.runtime.store.register_worker(
            self.name,
            pool=self.pool,
            concurrency=self.concurrency,
            assistants=served_assistants(self.app),
            host=socket.gethostname(),
            pid=os.getpid(),
            unless_live_for=unless_live_for,
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
            self.runtime.store.stop_worker(self.name, pid=os.getpid())
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
        store = self.runtime.store
        while not self._stopped.wait(self.settings.heartbeat_interval):
            try:
                if not store.beat_worker(self.name):
                    # Marked stopped by another process under this node name (or by hand)
                    # while this one runs: it is live, so it says so again.
                    self._register()
            except Exception as exc:  # a database blip: beat again next time
                logger.warning("worker heartbeat failed: %s", exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class FleetStep(bootsteps.StartStopStep):
    """The worker's bootstep for FleetMember: ready check and registration at start."""

    label = "runqueue fleet"
    requires = ("celery.worker.components:Pool",)

    def create(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return FleetMember(worker, runtime_of(worker.app))


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

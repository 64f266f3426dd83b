"""The classic prefork pool (the embedded broker's: billiard's Pool with its own threads, no
event loop) stops promptly, and never waits for a lock that a dead child took with it.

- At exit the pool takes its inqueue's read lock to empty the queue (_help_stuff_finish),
  with no timeout. An idle child waits for its next job holding that lock, and a child
  killed there keeps it for ever: a SIGTERM to the whole process group (systemd's
  KillMode=control-group, `kill -TERM -PGID`) then hung the worker until its SIGKILL. The
  lock is now awaited a moment only: with every child gone, nobody else reads the queue.
- Its supervisor and timeout threads slept 0.8 s and 1 s between two looks, and the pool's
  close and its clean-up at exit join them: each stop waited those out. Here their sleeps
  end as soon as the pool closes or terminates them.

PoolStopStep gives the worker's TaskPool this pool before the pool starts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from billiard.common import restart_state
from billiard.exceptions import RestartFreqExceeded
from billiard.pool import RUN, CoroStop, Pool, Supervisor, TimeoutHandler
from celery import bootsteps

# How long the pool's clean-up waits for its inqueue's read lock: a live child holds it only
# while it reads one job.
READ_LOCK_WAIT_SECONDS = 0.5


class _Wakeable:
    """A pool thread whose sleeps end when the pool closes or terminates it."""

    def _sleep(self, seconds: float) -> None:
        self._woken.wait(seconds)

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        self._woken.set()

    def terminate(self) -> None:
        super().terminate()  # type: ignore[misc]
        self._woken.set()


class PromptSupervisor(_Wakeable, Supervisor):
    """billiard's Supervisor (replaces exited children), its sleeps ended by a stop."""

    def __init__(self, pool: Pool):
        self._woken = threading.Event()
        super().__init__(pool)

    def body(self) -> None:
        self._sleep(0.8)
        pool = self.pool
        try:
            # As billiard: a burst of checks at start-up, with a lower restart frequency.
            previous = pool.restart_state
            pool.restart_state = restart_state(10 * pool._processes, 1)
            for _ in range(10):
                if self._state == RUN and pool._state == RUN:
                    pool._maintain_pool()
                    self._sleep(0.1)
            pool.restart_state = previous
            while self._state == RUN and pool._state == RUN:
                pool._maintain_pool()
                self._sleep(0.8)
        except RestartFreqExceeded:
            pool.close()
            pool.join()
            raise


class PromptTimeoutHandler(_Wakeable, TimeoutHandler):
    """billiard's TimeoutHandler (task time limits), its sleeps ended by a stop."""

    def __init__(self, *args: Any):
        self._woken = threading.Event()
        super().__init__(*args)

    def body(self) -> None:
        while self._state == RUN:
            try:
                for _ in self.handle_timeouts():
                    self._sleep(1.0)
            except CoroStop:
                break


class PromptPool(Pool):
    """billiard's classic Pool with the threads above and a bounded wait at exit."""

    Supervisor = PromptSupervisor
    TimeoutHandler = PromptTimeoutHandler

    @staticmethod
    def _help_stuff_finish(inqueue: Any, task_handler: Any, _pool: Any) -> None:
        """billiard's: empty the inqueue so that a task handler blocked on it can finish. The
        read lock is not waited for past READ_LOCK_WAIT_SECONDS: a child killed while it
        waited for a job (a SIGTERM to the process group) took it with it."""
        if not inqueue._rlock.acquire(timeout=READ_LOCK_WAIT_SECONDS):
            return
        while task_handler.is_alive() and inqueue._reader.poll():
            inqueue._reader.recv()
            time.sleep(0)


class PoolStopStep(bootsteps.StartStopStep):
    """Worker bootstep: a worker without an event loop (the embedded broker) runs PromptPool."""

    requires = ("celery.worker.components:Pool",)
    label = "PoolStop"

    def create(self, w: Any) -> None:
        # After the Pool step made the TaskPool, before it starts it (which builds the pool).
        if not w.use_eventloop and getattr(w.pool, "BlockingPool", None) is not None:
            w.pool.BlockingPool = PromptPool

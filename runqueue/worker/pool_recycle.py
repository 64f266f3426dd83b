"""Pool children that leave after a cancel: ended once their result is in, replaced at once.

A prefork child that ran a cancelled run exits, so that whatever the run started in threads
of its own stops with it (sigterm.task_finished). Celery's AsynPool, the pool of a worker on
Redis or RabbitMQ, handled that exit badly in two ways; both are worked around here, from the
worker's main process:

- The child used to kill itself inside task_postrun, before its result reached the main
  process, which then read the run as lost (WorkerLostError or Terminated, logged as errors).
  Now the child marks its slot "leaving" in an array shared with the main process and
  returns; its result goes out as any run's does. The main process, reading that result,
  keeps the slot closed to new jobs and terminates the child (a controlled termination: no
  error logged, no job handed to a child on its way out).
- Celery replaces an exited child when the child's sentinel pipe closes
  (AsynPool._event_process_exit -> maintain_pool). The pipe closes while the kernel tears the
  process down, a moment before waitpid() can reap it: in about half of the exits
  maintain_pool found nothing to replace, stopped watching that child, and the slot stayed
  empty until the pool's 5 s timer (celery/celery#9588). After such an exit, maintain_pool is
  now asked again a few milliseconds later, until the child has been replaced.

The classic billiard pool (the embedded filesystem broker: no event loop, one queue shared by
all children) keeps the old exit: there a child that outlived its result could read the next
job from the shared queue, and its supervisor thread replaces a child within 0.8 s anyway.
"""

from __future__ import annotations

import ctypes
import logging
from multiprocessing.sharedctypes import RawArray
from typing import Any

from billiard.pool import READY, RUN
from billiard.process import current_process
from celery import bootsteps, signals
from celery.concurrency.asynpool import AsynPool

logger = logging.getLogger(__name__)

# After an exit maintain_pool could not reap yet, ask again after each of these delays (s).
REAP_RETRY_DELAYS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

# Shared with the pool children (made before the pool forks them): [0] is 1 once the main
# process ends leaving children itself; [1 + index] is 1 while the child of that pool slot
# is leaving. One byte each: written by one process, read by the other, no lock to hold.
_slots: Any = None


def _slot_of(proc: Any) -> int | None:
    """Where a pool process's slot is in _slots (None: no shared slots, or not a slot)."""
    index = getattr(proc, "index", None)
    if _slots is None or not isinstance(index, int) or not 0 <= index < len(_slots) - 1:
        return None
    return 1 + index


def leave_after_result() -> bool:
    """In a pool child that must exit: mark it leaving, for the main process to end it once
    its result is in. False where the main process does not do that (the child exits itself)."""
    slot = _slot_of(current_process())
    if slot is None or not _slots[0]:
        return False
    _slots[slot] = 1
    return True


@signals.worker_process_init.connect
def child_started(**_: Any) -> None:
    """A new child takes over its slot: not leaving (its predecessor may have been)."""
    slot = _slot_of(current_process())
    if slot is not None:
        _slots[slot] = 0


def _leaving(proc: Any) -> bool:
    slot = _slot_of(proc)
    return slot is not None and bool(_slots[slot])


class PoolRecycleStep(bootsteps.StartStopStep):
    """Worker bootstep: on an AsynPool, end leaving children from the main process and
    replace every exited child at once."""

    requires = ("celery.worker.components:Pool",)
    label = "PoolRecycle"

    def create(self, w: Any) -> None:
        global _slots
        # Before the Pool step starts the pool, which forks the children that inherit this.
        if w.use_eventloop and getattr(w.pool_cls, "Pool", None) is AsynPool:
            size = max(int(w.concurrency or 1), int(w.max_concurrency or 0))
            _slots = RawArray(ctypes.c_byte, 1 + size)

    def start(self, w: Any) -> None:
        pool = getattr(w.pool, "_pool", None)
        if _slots is None or not isinstance(pool, AsynPool):
            return
        _end_leaving_children(pool)
        _replace_exited_children(pool)
        _slots[0] = 1


def _end_leaving_children(pool: AsynPool) -> None:
    """The READY message of a leaving child: deliver its result, then close its slot to new
    jobs and terminate it, all in this one event-loop callback (jobs are written later)."""
    handlers = pool._result_handler.state_handlers
    deliver = handlers[READY]

    def on_ready(job: Any, i: Any, obj: Any, inqW_fd: int) -> None:
        proc = pool._fileno_to_inq.get(inqW_fd)
        try:
            deliver(job, i, obj, inqW_fd)
        finally:  # a failing callback must not leave a leaving child's slot open
            if proc is not None and _leaving(proc):
                _close_and_end(pool, proc, inqW_fd)

    handlers[READY] = on_ready


def _close_and_end(pool: AsynPool, proc: Any, inqW_fd: int) -> None:
    """Take a leaving child's slot out of the scheduler and terminate the child."""
    pool._busy_workers.add(inqW_fd)  # the fair scheduler skips a busy slot
    pool._all_inqueues.discard(inqW_fd)  # and every scheduler an unknown one
    _slots[_slot_of(proc)] = 0
    try:
        proc.terminate_controlled()  # SIGTERM; exits at once between runs
    except (OSError, ValueError) as exc:  # already gone, or closed
        logger.debug("leaving pool child %s: %s", proc.pid, exc)


def _replace_exited_children(pool: AsynPool) -> None:
    """After a child's sentinel fired, keep asking maintain_pool until it reaped the child."""
    event_process_exit = pool._event_process_exit

    def on_exit(hub: Any, proc: Any) -> None:
        event_process_exit(hub, proc)
        if proc in pool._pool:  # exited, but not reapable yet: maintain_pool skipped it
            hub.call_later(REAP_RETRY_DELAYS[0], retry, hub, proc, 0)

    def retry(hub: Any, proc: Any, attempt: int) -> None:
        if proc not in pool._pool or pool._state != RUN:  # replaced, or the pool is closing
            return
        pool.maintain_pool()
        if proc in pool._pool and attempt + 1 < len(REAP_RETRY_DELAYS):
            hub.call_later(REAP_RETRY_DELAYS[attempt + 1], retry, hub, proc, attempt + 1)

    pool._event_process_exit = on_exit

"""Self-fencing: a run whose worker cannot renew its lease stops before anyone may reap it.

The database decides who owns a run: its lease ends `lease_seconds` after the database took
the last renewal (or the claim), and only then may another worker's reaper end the run and
free its thread. A worker that is cut off from the database, or paused, cannot learn that it
lost the run. So it counts for itself, on its own clock, from the moment just *before* it
sent its last successful renewal: at that moment + lease - `fence_margin_seconds` (the
deadline) it stops the run. That moment comes strictly before the database's lease expiry,
which comes before any reap:

    deadline = sent + lease - margin  <  sent + lease  <=  lease_expires_at  <  reap

Two things enforce the deadline, and neither does I/O (a renewal can hang for minutes on a
partitioned connection, so the renewing thread cannot be the one to notice):
- a Watchdog thread per run fires at the deadline: in a prefork child it sends the process
  the SIGTERM of a cancel (the run unwinds through its finally blocks); elsewhere it marks the
  run fenced, and the cooperative checks raise LeaseLostError;
- every write of the attempt (checkpoint, stream events, the final status, a hand-back, a
  retry's re-queue) first asks the fence itself, so a process resuming after a pause writes
  nothing even before its watchdog thread runs again.

In a prefork child, a run still executing at the lease's end (its finally blocks took longer
than the margin, or the process was paused past it) is hard-stopped with os._exit: the thread's
next run may start once the lease ended, and two runs of a thread never execute at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from runqueue.errors import RunCancelledError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds on CLOCK_BOOTTIME: monotonic like time.monotonic(), and it also counts the time a
# suspended machine slept (CLOCK_MONOTONIC stops then, while the database's clock, which
# ends the lease, runs on). A process stopped by SIGSTOP, or a paused VM, sees both advance.
_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)

# The hard stop comes this long before the lease ends by this process's count (at most half
# the margin): headroom for the watchdog's wake-up and for clock rates, so the process is gone
# before the database's lease expires, not merely at that instant.
HARD_STOP_HEADROOM = 0.5
EXIT_LEASE_LOST = 75  # a hard-stopped pool child's exit code (EX_TEMPFAIL)


def clock() -> float:
    """The fence's clock: monotonic, counting suspended time where the OS can."""
    return time.clock_gettime(_CLOCK) if _CLOCK is not None else time.monotonic()


class LeaseLostError(RunCancelledError):
    """This worker lost the run's lease: the run stopped and wrote nothing more; the reaper
    decides its end."""


class LeaseFence:
    """One attempt's lease as this process counts it: renewed, or lost (for good)."""

    def __init__(
        self,
        run_id: str,
        thread_id: str,
        *,
        lease_seconds: float,
        margin_seconds: float,
        sent_at: float,
        hard_stop: bool,
    ):
        self.run_id, self.thread_id = run_id, thread_id
        self.lease_seconds, self.margin_seconds = lease_seconds, margin_seconds
        self.hard_stop = hard_stop  # a prefork child: exit at the lease's end
        self.body_done = False  # the assistant's code has returned (or raised)
        self._renewed_at = sent_at
        self._lost: str | None = None  # why, once lost
        self._changed = threading.Condition()
        self.log = {"run_id": run_id, "thread_id": thread_id, "action": "fence"}

    @property
    def renewed_at(self) -> float:
        return self._renewed_at

    @property
    def deadline(self) -> float:
        """When the run stops itself: the last renewal's send time + lease - margin."""
        return self._renewed_at + self.lease_seconds - self.margin_seconds

    @property
    def stop_by(self) -> float:
        """When a prefork child still executing the run is hard-stopped (the lease's end,
        less HARD_STOP_HEADROOM)."""
        headroom = min(HARD_STOP_HEADROOM, self.margin_seconds / 2)
        return self._renewed_at + self.lease_seconds - headroom

    @property
    def lost_reason(self) -> str | None:
        return self._lost

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` (clock()) succeeded. A lost lease stays lost: the
        stop is under way, and the run's writes were already refused."""
        with self._changed:
            if self._lost is None and sent_at > self._renewed_at:
                self._renewed_at = sent_at
                self._changed.notify_all()

    def lose(self, reason: str) -> bool:
        """Mark the lease lost (once; logged once). True if this call lost it."""
        with self._changed:
            if self._lost is not None:
                return False
            self._lost = reason
            self._changed.notify_all()
        logger.warning(
            "run %s fenced: %s; it stops and writes nothing more, the reaper decides its end",
            self.run_id,
            reason,
            extra=self.log,
        )
        return True

    def expired(self) -> bool:
        """True once the lease is lost; reads the clock, so a process resuming from a pause
        knows before its watchdog thread has run. No I/O."""
        if self._lost is not None:
            self._hard_stop_if_over()
            return True
        now = clock()
        if now < self.deadline:
            return False
        self.lose(f"no lease renewal for {now - self._renewed_at:.1f}s")
        self._hard_stop_if_over()
        return True

    def error(self) -> LeaseLostError:
        return LeaseLostError(f"run {self.run_id} lost its lease ({self._lost}): stopped")

    def ensure(self) -> None:
        """Raise LeaseLostError if the lease is lost: called before each write."""
        if self.expired():
            raise self.error()

    def guard(self, operation: Callable[[], T]) -> Callable[[], T]:
        """`operation`, checking the fence first on every call (each retry of a write that
        waits out a database outage asks again)."""

        def guarded() -> T:
            self.ensure()
            return operation()

        return guarded

    def wait_until(self, moment: Callable[[], float], stopped: threading.Event) -> bool:
        """Sleep until clock() >= moment() (re-read after every renewal) or `stopped`; True
        if the moment came."""
        with self._changed:
            while not stopped.is_set():
                remaining = moment() - clock()
                if remaining <= 0:
                    return True
                self._changed.wait(min(remaining, 1.0))
        return False

    def body_ended(self) -> None:
        """The assistant's code, finally blocks included, has returned: nothing of it can
        overlap the thread's next run any more, so no hard stop (its writes stay refused)."""
        self.hard_stop = False
        self.body_done = True

    def _hard_stop_if_over(self) -> None:
        if self.hard_stop and clock() >= self.stop_by:
            hard_stop(self)


def hard_stop(fence: LeaseFence) -> None:
    """Exit this pool child now: its run's lease is about to end (the process resumed from a
    pause past it, or the run's finally blocks outlasted the margin). No finally block, no
    write: the thread's next run may start as soon as the lease ends."""
    logger.warning(
        "run %s still executing %.1fs after its last lease renewal: this pool child exits now",
        fence.run_id,
        clock() - fence.renewed_at,
        extra=fence.log,
    )
    os._exit(EXIT_LEASE_LOST)


class Watchdog(threading.Thread):
    """Fires at the fence's deadline. It does no I/O, so a hung renewal cannot delay it."""

    def __init__(self, fence: LeaseFence, on_fence: Callable[[], None]):
        super().__init__(name=f"runqueue-fence-{fence.run_id}", daemon=True)
        self.fence, self.on_fence = fence, on_fence
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # stop() and the stop signal never cross

    def stop(self) -> None:
        """The run ended here: nothing left to fence."""
        with self._lock:
            self._stopped.set()
        with self.fence._changed:
            self.fence._changed.notify_all()

    def run(self) -> None:
        fence = self.fence
        # Wakes at the deadline, or at once when the heartbeat learned the run is gone.
        fire_at = lambda: float("-inf") if fence.lost_reason else fence.deadline  # noqa: E731
        if not fence.wait_until(fire_at, self._stopped):
            return
        if fence.lost_reason is None:
            fence.lose(f"no lease renewal for {clock() - fence.renewed_at:.1f}s")
        with self._lock:
            if self._stopped.is_set():
                return
            if fence.hard_stop and clock() >= fence.stop_by:
                # Resumed past the lease's end (a pause): the thread's next run may already
                # execute, so no finally block of this one may run now.
                hard_stop(fence)
            self.on_fence()
        if not fence.wait_until(lambda: fence.stop_by, self._stopped):
            return
        if fence.hard_stop:
            hard_stop(fence)
        if fence.body_done:
            return
        logger.warning(
            "run %s still executing past its lease: this pool can stop it only at its next "
            "cooperative check (context.raise_if_cancelled, checkpoint, emit)",
            fence.run_id,
            extra=fence.log,
        )

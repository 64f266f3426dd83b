"""A run's lease heartbeat: renew the lease, learn of a cancel whose revoke was lost, and tell
the fence (fencing.py) when the run is no longer this attempt's."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from runqueue.store import RunStore
from runqueue.worker.fencing import clock
from runqueue.worker.running import Execution
from runqueue.worker.sigterm import in_prefork_child

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews the run's lease and notices a cancel even when the revoke broadcast was lost.

    A renewal that fails is tried again at the next beat; the fence (fencing.py), not this
    thread, stops a run whose renewals keep failing: a renewal can hang for minutes on a
    partitioned connection."""

    def __init__(
        self,
        store: RunStore,
        execution: Execution,
        interval: float,
        lease: float,
        keep_stream: Callable[[], None] | None = None,
    ):
        super().__init__(name=f"runqueue-heartbeat-{execution.run_id}", daemon=True)
        self.store, self.execution, self.keep_stream = store, execution, keep_stream
        self.interval, self.lease = interval, lease
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        run_id, fence = self.execution.run_id, self.execution.fence
        log = self.execution.log("heartbeat")
        signalled = False  # the cancel's SIGTERM, sent once
        while not self._stopped.wait(self.interval):
            if fence is not None and fence.expired():
                return  # lost: the run is stopping, and a late renewal must not extend it
            sent_at = clock()
            try:
                ours, abort = self.store.renew_lease(run_id, self.execution.token, self.lease)
            except Exception as exc:  # a database blip: try again next beat
                left = fence.deadline - clock() if fence is not None else float("nan")
                logger.warning(
                    "lease renewal failed for run %s (it stops itself in %.1fs unless a "
                    "renewal succeeds): %s",
                    run_id,
                    left,
                    exc,
                    extra=log,
                )
                continue
            if abort is not None and not signalled:
                signalled = True
                self.execution.abort_seen.set()
                if in_prefork_child() and not self._stopped.is_set():
                    os.kill(os.getpid(), signal.SIGTERM)
                # Renewals go on: the run keeps its lease while it unwinds (its finally
                # blocks, its last events), or the reaper would end it meanwhile.
            if not ours:
                # Reaped, re-queued or handed on: the watchdog stops the run, which writes
                # nothing more.
                if fence is not None:
                    fence.lose(
                        "the run is no longer this attempt's (its lease ended); last renewal "
                        f"{clock() - fence.renewed_at:.1f}s ago"
                    )
                return
            if fence is not None:
                fence.renewed(sent_at)
            if self.keep_stream is not None:
                self.keep_stream()  # by the stream's own thread: a hung store stalls not this

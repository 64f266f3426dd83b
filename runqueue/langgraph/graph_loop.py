"""A graph run's coroutine on an event loop of its own, in a thread of its own.

Every graph runs with LangGraph's async API (`astream`), so that `async def` nodes, sync nodes
(LangGraph runs them in the loop's default executor) and graphs mixing both run alike. The
run's own thread stays free to wait for chunks and to be stopped (a SIGTERM is delivered to
the main thread).

Stopping cancels the coroutine: an async node is cancelled at its next await. A sync node
runs in an executor thread, which no asyncio cancel reaches, and Python has no safe way to
stop a thread from outside: an exception raised into it (PyThreadState_SetAsyncExc), or at
its next function call from a trace function, can land between a lock's acquire() and its
release and leave the lock held for good (tried: logging's handler lock, within 6 and 3
cancels). So a sync node on a threads or solo pool runs to the end of its call, and the
loop's thread ends only once the executor is idle: a caller that joins it knows no node of
this run executes any more. (On prefork, the child is terminated instead.) The database
writes of the run's checkpointer run in an executor of their own (`writes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class GraphLoop:
    """One run's event loop, its task, and the thread that drives them."""

    def __init__(self, name: str, coroutine: Callable[[], Coroutine[Any, Any, None]]):
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=f"{name}-node"))
        self.writes = ThreadPoolExecutor(thread_name_prefix=f"{name}-write")
        self.task = self.loop.create_task(coroutine())
        self.thread = threading.Thread(target=self._drive, name=name, daemon=True)
        self.ended_by: BaseException | None = None  # what stopped the loop itself, if any

    def start(self) -> None:
        self.thread.start()

    def _drive(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except BaseException as error:  # noqa: BLE001 - the coroutine reports its own errors,
            self.ended_by = error  # but a SystemExit or KeyboardInterrupt stops the loop first
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                # Waits for the sync nodes still running in the executor: none outlives us.
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
                self.writes.shutdown(wait=True)
            finally:
                self.loop.close()

    def stop(self) -> None:
        """Cancel the graph's task (from any thread); a no-op once the loop has ended."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the graph has stopped
            self.loop.call_soon_threadsafe(self.task.cancel)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

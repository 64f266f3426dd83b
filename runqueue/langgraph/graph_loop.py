"""A graph run's coroutine on an event loop of its own, in a thread of its own.

Every graph runs with LangGraph's async API (`astream`), so that `async def` nodes, sync nodes
(LangGraph runs them in the loop's default executor) and graphs mixing both run alike. The
run's own thread stays free to wait for chunks and to be stopped (a SIGTERM is delivered to
the main thread). Stopping cancels the coroutine: an async node is cancelled at its next
await; a sync node cannot be interrupted, so the thread ends only once the loop's executor
has no node left running. A caller that joins the thread therefore knows no node of this
run executes any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any


class GraphLoop:
    """One run's event loop, its task, and the thread that drives them."""

    def __init__(self, name: str, coroutine: Callable[[], Coroutine[Any, Any, None]]):
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(coroutine())
        self.thread = threading.Thread(target=self._drive, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _drive(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except BaseException:  # noqa: BLE001, S110 - the coroutine reports its own errors
            pass
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                # Waits for the sync nodes still running in the executor: none outlives us.
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
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

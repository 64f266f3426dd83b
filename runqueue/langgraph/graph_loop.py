"""A graph run's coroutine on an event loop of its own, in a thread of its own.

Every graph runs with LangGraph's async API (`astream`), so that `async def` nodes, sync nodes
(LangGraph runs them in the loop's default executor) and graphs mixing both run alike. The
run's own thread stays free to wait for chunks and to be stopped (a SIGTERM is delivered to
the main thread).

Stopping cancels the coroutine: an async node is cancelled at its next await. A sync node
runs in an executor thread, which no asyncio cancel reaches: `stop()` raises `NodeStopped` in
that thread (CPython's PyThreadState_SetAsyncExc, the one way to stop a Python thread from
outside), so the node stops at its next Python instruction: after the sleep or the blocking
call it is in returns. The database writes of the run's checkpointer run in an executor of
their own (`writes`), which is never interrupted: a write is a transaction, fenced, that
ends by itself. The loop's thread ends once both executors are idle, so a caller that joins
it knows no node of this run executes any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class NodeStopped(BaseException):  # noqa: N818 - not an error: the run was cancelled
    """Raised inside a sync node's thread when its run is cancelled on a threads or solo
    pool (a BaseException, so that a node's `except Exception` does not swallow it)."""


class NodeExecutor(ThreadPoolExecutor):
    """The loop's default executor: where LangGraph runs sync nodes. It knows which of its
    threads are running one, to stop them."""

    def __init__(self, name: str):
        super().__init__(thread_name_prefix=name)
        self._busy: set[int] = set()
        self._busy_lock = threading.Lock()
        self._stopping = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        def tracked() -> Any:
            ident = threading.get_ident()
            with self._busy_lock:
                if self._stopping:
                    raise NodeStopped()
                self._busy.add(ident)
            try:
                return fn(*args, **kwargs)
            finally:
                with self._busy_lock:
                    self._busy.discard(ident)

        return super().submit(tracked)

    def stop_nodes(self) -> int:
        """Raise NodeStopped in every thread running a node, and refuse new ones: how many."""
        with self._busy_lock:
            self._stopping = True
            for ident in self._busy:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(NodeStopped)
                )
            return len(self._busy)


class GraphLoop:
    """One run's event loop, its task, and the thread that drives them."""

    def __init__(self, name: str, coroutine: Callable[[], Coroutine[Any, Any, None]]):
        self.loop = asyncio.new_event_loop()
        self.nodes = NodeExecutor(f"{name}-node")
        self.loop.set_default_executor(self.nodes)
        self.writes = ThreadPoolExecutor(thread_name_prefix=f"{name}-write")
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
                self.writes.shutdown(wait=True)
            finally:
                self.loop.close()

    def stop(self, *, stop_sync_nodes: bool = False) -> None:
        """Cancel the graph's task (from any thread); with stop_sync_nodes, stop the sync
        nodes running too. A no-op once the loop has ended."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the graph has stopped
            self.loop.call_soon_threadsafe(self.task.cancel)
        if stop_sync_nodes:
            self.nodes.stop_nodes()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

"""LangGraph's official checkpointers on runqueue's own database, every write fenced.

Thread state is stored by the official savers, `PostgresSaver` (langgraph-checkpoint-postgres)
and `SqliteSaver` (langgraph-checkpoint-sqlite), in their own tables beside runqueue's. What
runqueue adds is where they write: each `put` and `put_writes` runs on a connection the store
lends, inside a transaction that first locks the run row and checks that this attempt still
owns the run (runqueue.store.graph_writes). A process that lost its lease (cut off, paused,
cancelled) therefore writes no checkpoint after the run was ended or handed on, and the
rollback strategy deletes a run's graph state in the very transaction that cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from runqueue.errors import FencedOffError, RunQueueError
from runqueue.store import GraphWrite, LentConnection, RunStore
from runqueue.worker.durability import persist

logger = logging.getLogger(__name__)

T = TypeVar("T")

_done: set[tuple[int, str]] = set()  # (pid, database URL) whose tables this process set up
_done_lock = threading.Lock()


class _LentSqliteSaver(SqliteSaver):
    """SqliteSaver on a connection the store lends, inside the store's transaction: it must
    neither commit nor run its lazy setup() (setup_checkpointer did, once)."""

    def __init__(self, conn: Any, **kwargs: Any):
        super().__init__(conn, **kwargs)
        self.is_setup = True

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[Any]:
        cursor = self.conn.cursor()
        try:
            yield cursor
        finally:
            cursor.close()


class _QueueOnly:
    """A pipeline the PostgreSQL saver queues its statements in without syncing it: the
    store sends them with the fence and the commit, as one round trip. (PostgresSaver takes
    a `pipe` and syncs it after each write; this one's sync is the store's.)"""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def sync(self) -> None:
        pass


def official_saver(lent: LentConnection, serde: Any = None) -> BaseCheckpointSaver:
    """The official saver for the lent connection's database, on its driver connection
    (queueing into the lent pipeline, on PostgreSQL, when there is one)."""
    if lent.dialect == "postgresql":
        pipe = _QueueOnly(lent.pipeline) if lent.pipeline is not None else None
        return PostgresSaver(lent.driver, pipe=pipe, serde=serde)  # type: ignore[arg-type]
    return _LentSqliteSaver(lent.driver, serde=serde)


def _set_up(lent: LentConnection) -> None:
    saver = PostgresSaver if lent.dialect == "postgresql" else SqliteSaver
    saver(lent.driver).setup()


def setup_checkpointer(store: RunStore) -> None:
    """Create or upgrade LangGraph's tables with the official saver's own setup(): once per
    process and database (runqueue migrate runs it too)."""
    key = (os.getpid(), store.database_url)
    if key in _done:
        return
    with _done_lock:
        if key in _done:
            return
        store.set_up_graph_tables(_set_up)
        _done.add(key)


@dataclass(frozen=True)
class Fence:
    """The attempt a checkpointer writes for: its run and claim token, and how long a write
    waits out a database outage (Settings.status_write_timeout)."""

    run_id: str
    token: str
    write_timeout: float = 120.0


class ReadOnlyCheckpointerError(RunQueueError):
    """This checkpointer only reads thread state: graph runs write through a worker's."""


class RunCheckpointer(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer for one run's attempt (writes fenced on its claim), or, with
    no fence, for reading a thread's state."""

    def __init__(
        self, store: RunStore, fence: Fence | None = None, executor: Executor | None = None
    ):
        super().__init__()
        self.store = store
        self.fence = fence
        self.executor = executor  # where the async methods run the sync ones (None: default)
        setup_checkpointer(store)

    # -- reading: the official saver, one round trip per read --------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self.store.graph_read() as lent:
            return official_saver(lent, self.serde).get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        with self.store.graph_read() as lent:
            saver = official_saver(lent, self.serde)
            found = list(saver.list(config, filter=filter, before=before, limit=limit))
        return iter(found)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # The PostgreSQL saver's versions (a counter and a random part) on both databases.
        return PostgresSaver.get_next_version(self, current, channel)  # type: ignore[arg-type]

    # -- writing: fenced, recorded ------------------------------------------------------------

    def _write(self, writes: list[GraphWrite], write: Callable[[BaseCheckpointSaver], T]) -> T:
        """Run `write` with the official saver inside the store's fenced transaction, which
        records `writes`. A database outage is waited out, as for a plain checkpoint: the
        transaction is all or nothing, so a retry is safe."""
        fence = self.fence
        if fence is None:
            raise ReadOnlyCheckpointerError()

        def once() -> T:
            with self.store.graph_write(fence.run_id, fence.token, writes) as tx:
                return write(official_saver(tx, self.serde))

        try:
            return persist(
                once,
                total_seconds=fence.write_timeout,
                what=f"graph checkpoint of run {fence.run_id}",
                extra={"run_id": fence.run_id},
            )
        except FencedOffError:
            logger.warning(
                "run %s: graph checkpoint refused, this attempt no longer owns the run",
                fence.run_id,
                extra={"run_id": fence.run_id, "action": "graph_write_refused"},
            )
            raise

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        configurable = config["configurable"]
        written = GraphWrite(
            thread_id=str(configurable["thread_id"]),
            checkpoint_ns=configurable.get("checkpoint_ns", ""),
            checkpoint_id=checkpoint["id"],
        )
        return self._write(
            [written], lambda saver: saver.put(config, checkpoint, metadata, new_versions)
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        configurable = config["configurable"]
        written = [
            GraphWrite(
                thread_id=str(configurable["thread_id"]),
                checkpoint_ns=configurable.get("checkpoint_ns", ""),
                checkpoint_id=str(configurable["checkpoint_id"]),
                task_id=task_id,
                idx=WRITES_IDX_MAP.get(channel, idx),
            )
            for idx, (channel, _) in enumerate(writes)
        ]
        self._write(written, lambda saver: saver.put_writes(config, writes, task_id, task_path))

    # -- the async API (graphs run with astream): the same fenced calls, off the loop --------
    # Each runs in the run's write executor (runqueue.langgraph.graph_loop), so that a
    # database round trip (or a wait for an outage to end) never blocks the graph's other
    # async nodes, and a cancel that stops the sync nodes never lands inside a write.

    async def _off_loop(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._off_loop(lambda: self.get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._off_loop(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._off_loop(lambda: self.put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._off_loop(lambda: self.put_writes(config, writes, task_id, task_path))

"""LangGraph's checkpoint writes: fenced on the run's claim, and recorded so that the rollback
strategy can delete exactly what a run wrote.

The official savers (runqueue.langgraph) write through a connection the store lends them,
inside a transaction that first locks the run row and checks that this attempt still owns the
run. The statements here know LangGraph's table names; the savers' setup() creates the tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text

from runqueue.errors import FencedOffError
from runqueue.store.claims import owned_by
from runqueue.store.models import GraphWriteRow, Run
from runqueue.store.transactions import StoreBase

INSERT_GRAPH_WRITE = insert(GraphWriteRow.__table__)

# The rolled-back run's own rows (graph_writes), matched against LangGraph's tables. A row
# with no task_id is a checkpoint the run wrote: it goes with every write stored under it.
# A row with a task_id is a pending write the run added under an older checkpoint (resuming
# an interrupt, or a node finished after a cancel): only that write goes.
_OWN_CHECKPOINT = """EXISTS (SELECT 1 FROM graph_writes g WHERE g.run_id = :run_id
    AND g.task_id IS NULL AND g.thread_id = {t}.thread_id
    AND g.checkpoint_ns = {t}.checkpoint_ns AND g.checkpoint_id = {t}.checkpoint_id)"""
_OWN_WRITE = """EXISTS (SELECT 1 FROM graph_writes g WHERE g.run_id = :run_id
    AND g.thread_id = {t}.thread_id AND g.checkpoint_ns = {t}.checkpoint_ns
    AND g.checkpoint_id = {t}.checkpoint_id
    AND (g.task_id IS NULL OR (g.task_id = {t}.task_id AND g.idx = {t}.idx)))"""

ROLLBACK_STATEMENTS = {
    "postgresql": (
        # Channel values that only the run's checkpoints reference (versions carry a random
        # part, so a later run never writes the same key again; this only reclaims space).
        text(
            """DELETE FROM checkpoint_blobs b USING checkpoints c,
                jsonb_each_text(c.checkpoint -> 'channel_versions') v
            WHERE """
            + _OWN_CHECKPOINT.format(t="c")
            + """ AND b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
              AND b.channel = v.key AND b.version = v.value
              AND NOT EXISTS (
                SELECT 1 FROM checkpoints k, jsonb_each_text(k.checkpoint -> 'channel_versions') kv
                WHERE k.thread_id = c.thread_id AND k.checkpoint_ns = c.checkpoint_ns
                  AND kv.key = v.key AND kv.value = v.value AND NOT """
            + _OWN_CHECKPOINT.format(t="k")
            + ")"
        ),
        text("DELETE FROM checkpoint_writes w WHERE " + _OWN_WRITE.format(t="w")),
        text("DELETE FROM checkpoints c WHERE " + _OWN_CHECKPOINT.format(t="c")),
    ),
    "sqlite": (
        text("DELETE FROM writes WHERE " + _OWN_WRITE.format(t="writes")),
        text("DELETE FROM checkpoints WHERE " + _OWN_CHECKPOINT.format(t="checkpoints")),
    ),
}


@dataclass(frozen=True)
class GraphWrite:
    """One row LangGraph's saver wrote: a checkpoint (task_id None) or a pending write."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    task_id: str | None = None
    idx: int | None = None


def delete_graph_writes(conn: Connection, run_id: str) -> int:
    """Delete the graph checkpoints and pending writes the run wrote, in the caller's
    transaction (the rollback strategy's cancel). Returns how many rows it had recorded."""
    recorded = conn.execute(
        select(GraphWriteRow.write_id).where(GraphWriteRow.run_id == run_id).limit(1)
    ).first()
    if recorded is None:  # a plain assistant, or a graph run that wrote nothing yet
        return 0
    for statement in ROLLBACK_STATEMENTS[conn.dialect.name]:
        conn.execute(statement, {"run_id": run_id})
    return conn.execute(delete(GraphWriteRow).where(GraphWriteRow.run_id == run_id)).rowcount


# PostgreSQL: the fence is the ledger insert itself. Its run_id comes from a subquery that
# locks the run row and finds it only while this attempt owns the run; otherwise it is NULL,
# the NOT NULL column refuses the row, and the transaction aborts. One statement, sent in the
# same pipeline as the saver's own, so a fenced write costs no extra round trip.
_FENCED_LEDGER_INSERT = """INSERT INTO graph_writes
    (run_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
SELECT (SELECT run_id FROM runs WHERE run_id = %s AND status = 'running'
        AND claim_token = %s AND abort_action IS NULL FOR NO KEY UPDATE), w.*
FROM (VALUES {rows}) AS w(thread_id, checkpoint_ns, checkpoint_id, task_id, idx)"""
_LEDGER_ROW = "(%s, %s, %s, %s::text, %s::integer)"


def _refused(run_id: str) -> FencedOffError:
    return FencedOffError(
        f"run {run_id}: this attempt no longer owns the run; its graph checkpoint was not written"
    )


class GraphWriteStatements(StoreBase):
    """The transactions a run's graph checkpointer writes in."""

    @contextmanager
    def graph_write(
        self, run_id: str, token: str, writes: Sequence[GraphWrite]
    ) -> Iterator[Connection]:
        """A transaction for one of the run's checkpoint writes, which records `writes` (what
        the saver is about to write) only while this attempt owns the run, its row locked: a
        concurrent cancel either commits first (and this raises FencedOffError, nothing
        written) or waits until this write is done (and a rollback then deletes it)."""
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql" and writes:
                with self._fenced_pipeline(conn, run_id, token, writes):
                    yield conn
                return
            # SQLite (BEGIN IMMEDIATE already holds the write lock), or nothing to record.
            owner = conn.execute(
                select(Run.thread_id)
                .where(*owned_by(run_id, token))
                .with_for_update(key_share=True)
            ).first()
            if owner is None:
                raise _refused(run_id)
            self.record_graph_writes(conn, run_id, writes)
            yield conn

    @contextmanager
    def _fenced_pipeline(
        self, conn: Connection, run_id: str, token: str, writes: Sequence[GraphWrite]
    ) -> Iterator[None]:
        import psycopg

        driver = conn.connection.driver_connection
        rows = ", ".join([_LEDGER_ROW] * len(writes))
        params: list[Any] = [run_id, token]
        for w in writes:
            params += [w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx]
        try:
            with driver.pipeline():
                driver.execute(_FENCED_LEDGER_INSERT.format(rows=rows), params)
                yield
        except psycopg.errors.NotNullViolation as error:
            if error.diag.table_name == "graph_writes":
                raise _refused(run_id) from None
            raise

    def record_graph_writes(
        self, conn: Connection, run_id: str, writes: Sequence[GraphWrite]
    ) -> None:
        """Record, in the write's own transaction, what the run wrote."""
        if not writes:
            return
        conn.execute(
            INSERT_GRAPH_WRITE,
            [
                dict(
                    run_id=run_id,
                    thread_id=w.thread_id,
                    checkpoint_ns=w.checkpoint_ns,
                    checkpoint_id=w.checkpoint_id,
                    task_id=w.task_id,
                    idx=w.idx,
                )
                for w in writes
            ],
        )

"""LangGraph's checkpoint writes: fenced on the run's claim, and recorded so that the rollback
strategy can undo exactly what a run wrote.

The official savers (runqueue.langgraph) write through a connection the store lends them,
inside a transaction that first records what they are about to write, and only while this
attempt owns the run. The statements here know the savers' table layout (LangGraph's
`checkpoints`, `checkpoint_writes` / `writes`, `checkpoint_blobs`); their setup() makes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import IntegrityError

from runqueue.errors import (
    DatabaseUnavailableError,
    FencedOffError,
    ThreadBusyError,
    ThreadNotFoundError,
)
from runqueue.store.claims import owned_by
from runqueue.store.database import unreachable_as_error
from runqueue.store.models import GraphWriteRow, Run, Thread
from runqueue.store.transactions import DB_NOW_SQL, IS_INFLIGHT, StoreBase, db_now

GRAPH_SETUP_LOCK_KEY = 0x72756E71  # pg_advisory_lock key: one process runs the savers' setup()

# LangGraph's table of pending writes and its value column, per saver.
WRITES_TABLE = {"postgresql": ("checkpoint_writes", "blob"), "sqlite": ("writes", "value")}

# The fence is the ledger insert itself: its run_id comes from a subquery that finds the run
# only while this attempt owns it within its lease, by the database's clock, as owned_by says
# (and locks its row on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the database's
# write lock). Otherwise it is NULL, the NOT NULL column refuses the row, and the
# transaction aborts. Each row also copies the pending write it is about to
# replace, if any: LangGraph upserts its special channels (__resume__, __interrupt__, ...)
# and re-sends writes already stored, so rollback must restore those, not delete them.
_LEDGER_INSERT = """WITH w(thread_id, checkpoint_ns, checkpoint_id, task_id, idx) AS (
    VALUES {rows})
INSERT INTO graph_writes (run_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx,
    overwrote, prev_channel, prev_type, prev_value, prev_task_path)
SELECT (SELECT run_id FROM runs WHERE run_id = {run_id} AND status = 'running'
        AND claim_token = {token} AND abort_action IS NULL AND lease_expires_at > {now} {lock}),
    w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx,
    o.task_id IS NOT NULL, o.channel, o.type, o.{value}, o.task_path
FROM w LEFT JOIN {writes} o ON o.thread_id = w.thread_id AND o.checkpoint_ns = w.checkpoint_ns
    AND o.checkpoint_id = w.checkpoint_id AND o.task_id = w.task_id AND o.idx = w.idx"""
_LEDGER_ROW = "({}, {}, {}, CAST({} AS TEXT), CAST({} AS INTEGER))"

# Undoing a rolled-back run. A ledger row with no task_id is a checkpoint the run wrote: it
# goes, with every write stored under it. A row with a task_id is a pending write, under an
# older checkpoint too (resuming an interrupt, a node finished after a cancel): the first
# time the run touched that key decides whether the key was new (delete it) or replaced
# (restore what was there).
_FIRST_TOUCH = """g.write_id = (SELECT min(f.write_id) FROM graph_writes f
    WHERE f.run_id = g.run_id AND f.thread_id = g.thread_id AND f.checkpoint_ns = g.checkpoint_ns
      AND f.checkpoint_id = g.checkpoint_id AND f.task_id = g.task_id AND f.idx = g.idx)"""
_OWN_CHECKPOINT = """EXISTS (SELECT 1 FROM graph_writes g WHERE g.run_id = :run_id
    AND g.task_id IS NULL AND g.thread_id = {t}.thread_id
    AND g.checkpoint_ns = {t}.checkpoint_ns AND g.checkpoint_id = {t}.checkpoint_id)"""
# Row-value IN (...) lets both databases find the run's rows by their primary keys instead of
# scanning LangGraph's tables (inside the cancel's transaction).
_TOUCHED = """({t}.thread_id, {t}.checkpoint_ns, {t}.checkpoint_id) IN (
    SELECT thread_id, checkpoint_ns, checkpoint_id FROM graph_writes
    WHERE run_id = :run_id{only})"""
_RESTORE_REPLACED = (
    """UPDATE {writes} SET channel = g.prev_channel, type = g.prev_type,
    {value} = g.prev_value, task_path = g.prev_task_path
FROM graph_writes g
WHERE {touched} AND g.run_id = :run_id AND g.overwrote AND {writes}.thread_id = g.thread_id
  AND {writes}.checkpoint_ns = g.checkpoint_ns AND {writes}.checkpoint_id = g.checkpoint_id
  AND {writes}.task_id = g.task_id AND {writes}.idx = g.idx AND """
    + _FIRST_TOUCH
)
_DELETE_WRITTEN = (
    """DELETE FROM {writes} WHERE {touched} AND EXISTS (SELECT 1 FROM graph_writes g
    WHERE g.run_id = :run_id AND g.thread_id = {writes}.thread_id
      AND g.checkpoint_ns = {writes}.checkpoint_ns AND g.checkpoint_id = {writes}.checkpoint_id
      AND (g.task_id IS NULL OR (g.task_id = {writes}.task_id AND g.idx = {writes}.idx
           AND NOT g.overwrote AND """
    + _FIRST_TOUCH
    + ")))"
)
# PostgreSQL keeps channel values apart, in checkpoint_blobs: the ones only the run's
# checkpoints reference go too (versions carry a random part, so a later run never writes
# the same key again; this only reclaims space).
_DELETE_BLOBS = (
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
)


def _rollback_statements(dialect: str) -> tuple[Any, ...]:
    writes, value = WRITES_TABLE[dialect]
    touched = _TOUCHED.format(t=writes, only="")
    own = _TOUCHED.format(t="checkpoints", only=" AND task_id IS NULL")
    statements = [
        _RESTORE_REPLACED.format(writes=writes, value=value, touched=touched),
        _DELETE_WRITTEN.format(writes=writes, touched=touched),
    ]
    if dialect == "postgresql":
        statements.append(_DELETE_BLOBS)
    statements.append(
        f"DELETE FROM checkpoints WHERE {own} AND " + _OWN_CHECKPOINT.format(t="checkpoints")
    )
    return tuple(text(statement) for statement in statements)


ROLLBACK_STATEMENTS = {dialect: _rollback_statements(dialect) for dialect in WRITES_TABLE}


@dataclass(frozen=True)
class LentConnection:
    """A database connection lent to LangGraph's official saver: the driver's own (psycopg
    or sqlite3), which database it is, and on PostgreSQL, for a fenced write, the pipeline its
    statements are queued in, sent with the ledger insert and the commit as one round trip."""

    driver: Any
    dialect: str  # "postgresql" or "sqlite"
    pipeline: Any | None = None


def _lent(conn: Connection, pipeline: Any | None = None) -> LentConnection:
    return LentConnection(conn.connection.driver_connection, conn.dialect.name, pipeline)


@dataclass(frozen=True)
class GraphWrite:
    """One row LangGraph's saver is about to write: a checkpoint (task_id None) or a
    pending write (task_id, idx)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    task_id: str | None = None
    idx: int | None = None


def delete_graph_writes(conn: Connection, run_id: str) -> int:
    """Undo the graph checkpoints and pending writes the run wrote, in the caller's
    transaction (the rollback strategy's cancel). Returns how many rows it had recorded."""
    recorded = conn.execute(
        select(GraphWriteRow.write_id).where(GraphWriteRow.run_id == run_id).limit(1)
    ).first()
    if recorded is None:  # a plain assistant, or a graph run that wrote nothing yet
        return 0
    for statement in ROLLBACK_STATEMENTS[conn.dialect.name]:
        conn.execute(statement, {"run_id": run_id})
    return conn.execute(delete(GraphWriteRow).where(GraphWriteRow.run_id == run_id)).rowcount


def _refused(run_id: str) -> FencedOffError:
    return FencedOffError(
        f"run {run_id}: this attempt no longer owns the run; its graph checkpoint was not written"
    )


def _ledger_insert(dialect: str, writes: Sequence[GraphWrite], placeholder: Any) -> str:
    """The ledger insert for `writes`; placeholder(n) names the n-th parameter, numbered in
    the order they appear (positional on psycopg): the rows, then the run and its token."""
    table, value = WRITES_TABLE[dialect]
    count = 5 * len(writes)
    rows = ", ".join(
        _LEDGER_ROW.format(*(placeholder(5 * row + column) for column in range(5)))
        for row in range(len(writes))
    )
    lock = "FOR NO KEY UPDATE" if dialect == "postgresql" else ""
    return _LEDGER_INSERT.format(
        rows=rows,
        run_id=placeholder(count),
        token=placeholder(count + 1),
        now=DB_NOW_SQL[dialect],
        lock=lock,
        writes=table,
        value=value,
    )


def _ledger_params(run_id: str, token: str, writes: Sequence[GraphWrite]) -> list[Any]:
    params: list[Any] = []
    for w in writes:
        params += [w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx]
    return [*params, run_id, token]


class GraphWriteStatements(StoreBase):
    """The transactions a run's graph checkpointer writes in."""

    def set_up_graph_tables(self, setup: Callable[[LentConnection], None]) -> None:
        """Run the official saver's own setup() (`setup`) on a connection outside any
        transaction (it creates indexes CONCURRENTLY), one process at a time (an advisory
        lock) on PostgreSQL."""
        with self.engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                setup(_lent(conn))
                return
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = conn.connection.driver_connection
            driver.execute("SELECT pg_advisory_lock(%s)", (GRAPH_SETUP_LOCK_KEY,))
            try:
                setup(_lent(conn))
            finally:
                driver.execute("SELECT pg_advisory_unlock(%s)", (GRAPH_SETUP_LOCK_KEY,))

    @contextmanager
    def graph_read(self) -> Iterator[LentConnection]:
        """A connection for a saver's reads: autocommit on PostgreSQL (each read one round
        trip, as the saver's own), a read-only transaction on SQLite."""
        if self.engine.dialect.name != "postgresql":
            with self.reading() as conn:
                yield _lent(conn)
            return
        with (
            unreachable_as_error(self.database_url),
            _driver_errors_mapped(),
            self.engine.connect() as conn,
        ):
            yield _lent(conn.execution_options(isolation_level="AUTOCOMMIT"))

    @contextmanager
    def graph_write(
        self, run_id: str, token: str, writes: Sequence[GraphWrite]
    ) -> Iterator[LentConnection]:
        """A transaction for one of the run's checkpoint writes. It first records `writes`
        (what the saver is about to write), only while this attempt owns the run: a
        concurrent cancel either commits first (and this raises FencedOffError, nothing
        written) or waits until this write is done (and a rollback then undoes it)."""
        if writes and self.engine.dialect.name == "postgresql":
            with self._pipelined(run_id, token, writes) as pipelined:
                yield pipelined
            return
        with self.transaction() as conn:
            if not writes:  # nothing to record: the fence alone
                owner = conn.execute(
                    select(Run.thread_id)
                    .where(*owned_by(run_id, token))
                    .with_for_update(key_share=True)
                ).first()
                if owner is None:
                    raise _refused(run_id)
                yield _lent(conn)
                return
            params = _ledger_params(run_id, token, writes)
            statement = text(_ledger_insert(conn.dialect.name, writes, lambda n: f":p{n}"))
            try:
                conn.execute(statement, {f"p{n}": value for n, value in enumerate(params)})
            except IntegrityError as error:
                if "graph_writes.run_id" in str(error.orig):
                    raise _refused(run_id) from None
                raise
            yield _lent(conn)

    @contextmanager
    def thread_update(self, thread_id: str, user_id: str | None = None) -> Iterator[LentConnection]:
        """One transaction for a state update made between runs (not by one): it touches the
        thread's updated_at, which takes the thread lock run creation and every strategy
        take first (on SQLite, BEGIN IMMEDIATE already serializes it), then finds no run of
        the thread pending or running, and lends the saver its connection. While it lasts no
        run of the thread can be created, claimed or write: a run that writes must be
        running, and it can only be created under this lock. So an update never lands inside
        a run's writes, and two updates never read the same parent. ThreadNotFoundError (or
        another user's thread, `user_id` given), ThreadBusyError: nothing written."""
        guard = [Thread.thread_id == thread_id]
        if user_id is not None:
            guard.append(Thread.user_id == user_id)
        with self.transaction() as conn, _driver_errors_mapped():
            touched = conn.execute(
                update(Thread).where(*guard).values(updated_at=db_now()).returning(Thread.thread_id)
            ).first()
            if touched is None:
                raise ThreadNotFoundError(f"thread {thread_id} not found")
            inflight = self._inflight(conn, thread_id)
            if inflight:
                raise ThreadBusyError(
                    f"thread {thread_id} has a run in flight (run {inflight[0].run_id}, "
                    f"{inflight[0].status}): its state can be updated once no run is pending "
                    "or running"
                )
            yield _lent(conn)

    def purge_graph_writes(self, limit: int = 5000) -> int:
        """Forget what finished runs wrote: only a run in flight can be rolled back, so the
        ledger of a final run is never read again (the maintenance pass calls this)."""
        finished = (
            select(GraphWriteRow.write_id)
            .join(Run, Run.run_id == GraphWriteRow.run_id)
            .where(~IS_INFLIGHT)
            .limit(limit)
        )
        # Most passes find nothing (no graph ran): look first without the write lock, which
        # on SQLite every other writer of the database would wait for.
        with self.reading() as conn:
            if conn.execute(finished.limit(1)).first() is None:
                return 0
        with self.transaction() as conn:
            return conn.execute(
                delete(GraphWriteRow).where(GraphWriteRow.write_id.in_(finished.scalar_subquery()))
            ).rowcount

    @contextmanager
    def _pipelined(
        self, run_id: str, token: str, writes: Sequence[GraphWrite]
    ) -> Iterator[LentConnection]:
        """PostgreSQL: BEGIN, the ledger insert (the fence), the saver's statements and
        COMMIT, queued in one pipeline on an autocommit connection and sent as one round
        trip. If the fence refuses, PostgreSQL skips everything after it, and the failed
        transaction is rolled back here."""
        import psycopg

        statement = _ledger_insert("postgresql", writes, lambda _: "%s")
        with unreachable_as_error(self.database_url), self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = conn.connection.driver_connection
            try:
                with _driver_errors_mapped():
                    try:
                        with driver.pipeline() as pipeline:
                            driver.execute("BEGIN")
                            driver.execute(statement, _ledger_params(run_id, token, writes))
                            yield _lent(conn, pipeline)
                            driver.execute("COMMIT")
                    finally:
                        if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                            driver.rollback()
            except psycopg.errors.NotNullViolation as error:
                if error.diag.table_name == "graph_writes":
                    raise _refused(run_id) from None
                raise


@contextmanager
def _driver_errors_mapped() -> Iterator[None]:
    """psycopg's own connection errors, raised below SQLAlchemy (pipelines, a saver's
    cursors), as the DatabaseUnavailableError every other store call raises."""
    import psycopg

    try:
        yield
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(f"database unavailable: {error}") from error

"""The store's foundation: one database URL, its transactions, and the thread lock.

Transactions that touch more than one run of a thread first lock the thread row (a row
lock on PostgreSQL; on SQLite every transaction is BEGIN IMMEDIATE), always thread first,
then runs, so they cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Float, Row, cast, insert, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from runqueue.errors import ThreadNotFoundError
from runqueue.records import DispatchState, RunStatus
from runqueue.store.database import READ_ONLY, get_engine, unreachable_as_error
from runqueue.store.models import Run, RunEventRow, Thread, Timestamp

logger = logging.getLogger(__name__)

PENDING = RunStatus.pending.value
RUNNING = RunStatus.running.value
INFLIGHT = (PENDING, RUNNING)
HELD = DispatchState.held.value
QUEUED = DispatchState.queued.value
MAX_REPUBLISH_BACKOFF = 3600.0  # seconds


class db_now(FunctionElement):  # noqa: N801 - an SQL function, named like func.now()
    """The database's clock, never the calling process's: every timestamp a statement writes
    or compares (leases, the relay's timers, record times) comes from here, so workers whose
    clocks disagree still agree on when a lease expires and in which order things happened.

    PostgreSQL: statement_timestamp(), when the server received the statement. The caller
    took its own monotonic reading before sending it, so a lease written as this + L ends
    after the caller's own deadline (its reading + L): a worker that counts its lease from
    that reading stops before any reaper, on any clock, may take the run. A comparison
    (the reaper's `lease_expires_at <= now`) uses a time no later than the moment it is
    evaluated, so it never reaps early either. Unlike now() (the transaction's start) it
    comes after the locks taken earlier in the transaction: a run created or ended under
    the thread lock is stamped after everything that held that lock before it.

    SQLite: the text SQLAlchemy stores for a DateTime (YYYY-MM-DD HH:MM:SS.ffffff, UTC;
    SQLite's clock has milliseconds), so stored values compare correctly as text. SQLite is
    embedded: its clock is the host's, shared by every process of a one-host deployment."""

    type = Timestamp
    inherit_cache = True
    name = "db_now"


class db_now_plus(FunctionElement):  # noqa: N801 - an SQL function, like db_now
    """The database's clock plus `seconds` (a number, or a bindparam in a statement built
    once): a bound parameter, so the statement is compiled once and cached."""

    type = Timestamp
    inherit_cache = True
    name = "db_now_plus"

    def __init__(self, seconds: Any):
        super().__init__(cast(seconds, Float()))


_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f'"
# db_now() as each dialect writes it (also for statements written as text: graph_writes).
DB_NOW_SQL = {
    "postgresql": "statement_timestamp()",
    "sqlite": f"(strftime({_SQLITE_FORMAT}, 'now') || '000')",
}


@compiles(db_now)
def _now(element: db_now, compiler: Any, **kw: Any) -> str:
    return DB_NOW_SQL[compiler.dialect.name]


@compiles(db_now_plus, "postgresql")
def _now_plus_postgresql(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() + make_interval(secs => {seconds}))"


@compiles(db_now_plus, "sqlite")
def _now_plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    # A Julian day number plus a fraction of a day: strftime rounds it to the millisecond.
    seconds = compiler.process(element.clauses, **kw)
    return f"(strftime({_SQLITE_FORMAT}, julianday('now') + {seconds} / 86400.0) || '000')"


# Built once, parameters bound per execution (keys are column names).
INSERT_EVENT = insert(RunEventRow.__table__).values(at=db_now())


def _upsert_thread(insert_for_dialect: Any) -> Any:
    """INSERT a thread, or on conflict touch its updated_at (never a key column): the DO
    UPDATE takes the row lock that SELECT ... FOR NO KEY UPDATE would, in one statement."""
    stmt = insert_for_dialect(Thread.__table__).values(created_at=db_now(), updated_at=db_now())
    return stmt.on_conflict_do_update(
        index_elements=[Thread.thread_id], set_={"updated_at": stmt.excluded.updated_at}
    ).returning(Thread.user_id)


UPSERT_THREAD = {"postgresql": _upsert_thread(pg_insert), "sqlite": _upsert_thread(sqlite_insert)}


def status_in(statuses: Iterable[str]) -> ColumnElement[bool]:
    """runs.status IN ('pending', 'running'), the values written into the SQL: no expanding
    parameter to re-render at each execution, and a predicate PostgreSQL can match to the
    partial indexes even in a prepared statement's generic plan."""
    return Run.status.in_([literal_column(f"'{RunStatus(status).value}'") for status in statuses])


IS_INFLIGHT = status_in(INFLIGHT)


# (run_id, status, dispatch_state) of a thread's pending or running run, as _inflight reads it.
InflightRow = Row[tuple[str, str, str]]


def holds_thread(run: InflightRow) -> bool:
    """A run that keeps its thread busy: running, or queued to start (newcomers wait)."""
    return run.status == RUNNING or (run.status == PENDING and run.dispatch_state == QUEUED)


class StoreBase:
    """A database URL and the helpers every group of statements shares."""

    def __init__(
        self,
        database_url: str,
        republish_after: float = 30.0,
        pool_size: int = 15,
        *,
        hide_parameters: bool = True,
    ):
        self.database_url = database_url
        self.republish_after = republish_after
        self.pool_size = pool_size
        self.hide_parameters = hide_parameters  # False: errors show SQL parameters (debug)

    def _republish_in(self, published: int) -> float:
        """Seconds until the relay publishes a still-unclaimed queued run again:
        republish_after, then doubling with every publish, so a long backlog is not flooded
        with copies."""
        return min(self.republish_after * 2**published, MAX_REPUBLISH_BACKOFF)

    @property
    def engine(self):  # noqa: ANN201
        return get_engine(self.database_url, self.pool_size, hide_parameters=self.hide_parameters)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; an unreachable database becomes DatabaseUnavailableError."""
        with unreachable_as_error(self.database_url), self.engine.begin() as conn:
            yield conn

    @property
    def has_functions(self) -> bool:
        """True on PostgreSQL through psycopg 3 (the driver runqueue installs and selects
        for postgresql:// URLs), where the hot transitions are SQL functions (functions.py)."""
        dialect = self.engine.dialect
        return dialect.name == "postgresql" and dialect.driver == "psycopg"

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection in autocommit: each statement is its own transaction, with no
        BEGIN or COMMIT round trip around it. For one call of a transition function."""
        with unreachable_as_error(self.database_url), self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite it does not take the write lock, so
        readers polling often (run streams) never queue behind, or ahead of, writers."""
        with (
            unreachable_as_error(self.database_url),
            self.engine.connect() as conn,
            conn.execution_options(**{READ_ONLY: True}).begin(),
        ):
            yield conn

    def lock_thread(
        self,
        conn: Connection,
        thread_id: str,
        user_id: str | None,
        *,
        create: bool = True,
        owned: bool = False,
    ) -> None:
        """Create the thread if needed (`create`), and hold its row lock until the transaction
        ends (one statement; on SQLite BEGIN IMMEDIATE already holds the write lock).
        ThreadNotFoundError if it does not exist and may not be created, or if `owned` and it
        belongs to another user than `user_id` (None: any user's)."""
        if create:
            owner = conn.execute(
                UPSERT_THREAD[conn.dialect.name],
                dict(thread_id=thread_id, user_id=user_id, metadata={}),
            ).one()
        else:
            owner = conn.execute(
                select(Thread.user_id)
                .where(Thread.thread_id == thread_id)
                .with_for_update(key_share=True)
            ).first()
        if owner is None or (owned and user_id is not None and owner.user_id != user_id):
            raise ThreadNotFoundError(f"no thread {thread_id}")

    def _lock_thread_of(
        self, conn: Connection, run_id: str, user_id: str | None = None
    ) -> str | None:
        """Lock the thread a run belongs to (a run never changes thread); None: no such run.

        On SQLite the transaction's BEGIN IMMEDIATE already holds the database write lock.
        FOR NO KEY UPDATE, not FOR UPDATE: a checkpoint insert's foreign-key check takes
        KEY SHARE on the thread row while it holds its run row; FOR UPDATE would wait for it
        while that insert waits for us (a deadlock seen with rollback vs. checkpoint)."""
        query = (
            select(Thread.thread_id)
            .join(Run, Run.thread_id == Thread.thread_id)
            .where(Run.run_id == run_id)
            .with_for_update(key_share=True, of=Thread)
        )
        if user_id is not None:
            query = query.where(Run.user_id == user_id)
        return conn.execute(query).scalar()

    def _inflight(self, conn: Connection, thread_id: str) -> Sequence[InflightRow]:
        """The thread's pending and running runs, oldest first (run_id, status,
        dispatch_state). Read under the thread lock, nothing but a claim (queued -> running)
        or a re-queue (running -> queued) can change them, and neither frees the thread."""
        return conn.execute(
            select(Run.run_id, Run.status, Run.dispatch_state)
            .where(Run.thread_id == thread_id, IS_INFLIGHT)
            .order_by(Run.created_at, Run.run_id)
        ).all()

    def _record_event(
        self,
        conn: Connection,
        *,
        run_id: str,
        thread_id: str,
        status: RunStatus,
        worker: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one row to the run's history (run_events), in the caller's transaction,
        stamped with the database's clock."""
        conn.execute(
            INSERT_EVENT,
            dict(
                run_id=run_id,
                thread_id=thread_id,
                status=status.value,
                worker=worker,
                detail=detail,
            ),
        )

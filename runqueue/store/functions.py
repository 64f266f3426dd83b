"""PostgreSQL: the hot transitions as one statement each, calling the SQL functions of
store/sql/transitions.sql (runqueue_create_run, runqueue_claim_run, runqueue_finish_run),
which the migrations install.

Sent alone on an autocommit connection, each is one round trip where the same statements
sent one by one took five to seven (BEGIN, lock, read, write, history row, COMMIT). The
functions run the statements of decisions.py and claims.py, guards included, so SQLite
keeps those and PostgreSQL gets the same decisions in one call. A run's columns come back
expanded from its row type, one by one under their own names: run_record() reads them.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Boolean, Connection, Text, TextClause, column, text
from sqlalchemy.exc import DBAPIError

from runqueue.errors import ConflictError, RunQueueError, ThreadNotFoundError
from runqueue.records import RunRecord, RunStatus
from runqueue.store.effects import Effects, NewRun, RunEnding, thread_busy
from runqueue.store.models import JSONType
from runqueue.store.rows import RUN_COLUMNS, run_record, run_record_of
from runqueue.store.strategies import ON_BUSY_THREAD, OnBusyThread
from runqueue.store.transactions import QUEUED, StoreBase
from runqueue.store.webhook_deliveries import with_webhook


class CreateOutcome(enum.StrEnum):
    """What runqueue_create_run answered, in its `outcome` column."""

    created = "created"  # the run is inserted, queued or held behind its thread
    conflict = "conflict"  # reject on a busy thread: conflict_* name its oldest run in flight
    no_thread = "no_thread"  # the thread may not be made, or is another user's
    cancel_first = "cancel_first"  # runs in flight to cancel: the statements do it (_create_in)


def _expanded(composite: str) -> str:
    """The run's columns from a composite of its row type, named one by one in the model's
    order: `(o.run).*` would follow the table's physical order, which ALTER TABLE ADD
    COLUMN (migration 0002) made differ from the model's, and typed results map by
    position."""
    return ", ".join(f"({composite}).{c.name}" for c in RUN_COLUMNS)


CREATE_RUN_SQL = text(
    f"SELECT o.outcome, o.conflict_run_id, o.conflict_status, {_expanded('o.run')} "
    "FROM runqueue_create_run(:run_id, :thread_id, :assistant_id, :user_id, :strategy, "
    ":check_strategy, :on_disconnect, CAST(:metadata AS jsonb), CAST(:kwargs AS jsonb), "
    ":follow_up_to_run_id, :create_thread, :own_thread, "
    "CAST(:republish_in AS double precision), CAST(:after_seconds AS double precision)) AS o"
)

CLAIM_RUN_SQL = text(
    f"SELECT o.outcome, o.checkpoint_values, {_expanded('o.run')} "
    "FROM runqueue_claim_run(:run_id, :worker, :token, "
    "CAST(:lease_seconds AS double precision)) AS o"
)

FINISH_RUN_SQL = text(
    f"SELECT o.changed, {_expanded('o.released')} "
    "FROM runqueue_finish_run(:run_id, :status, :token, CAST(:result AS jsonb), :error, "
    ":worker, :detail, CAST(:from_statuses AS text[]), :claimed_by, :lease_over, "
    "CAST(:republish_in AS double precision)) AS o"
)

# Typed result columns, in the order the statements name them: SQLAlchemy maps each row
# by position with the map it compiled once, instead of matching 30 untyped names at every
# call (0.3 ms of CPU a transition).
_RUN = [column(c.name, c.type) for c in RUN_COLUMNS]
CREATE_RUN = CREATE_RUN_SQL.columns(
    column("outcome", Text), column("conflict_run_id", Text), column("conflict_status", Text), *_RUN
)
CLAIM_RUN = CLAIM_RUN_SQL.columns(
    column("outcome", Text), column("checkpoint_values", JSONType), *_RUN
)
FINISH_RUN = FINISH_RUN_SQL.columns(column("changed", Boolean), *_RUN)


def as_json(value: Any) -> str | None:
    """A JSON parameter as text (None stays SQL NULL: the column keeps its value)."""
    return None if value is None else json.dumps(value)


def pipelined(
    conn: Connection, statement: TextClause, params: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Execute `statement` once per parameter set in psycopg's pipeline mode (executemany
    with returning: every call is sent before the first answer is read), in the caller's
    transaction, and return each call's one row by column name. Driver errors come back as
    SQLAlchemy's, as for conn.execute, so the store maps them the same way."""
    if not params:
        return []
    driver_sql = _DRIVER_SQL.get(statement.text)
    if driver_sql is None:  # :name -> %(name)s, psycopg's own placeholders
        driver_sql = _DRIVER_SQL[statement.text] = re.sub(
            r"(?<!:):(\w+)", r"%(\1)s", statement.text
        )
    driver = conn.connection.driver_connection
    try:
        with driver.cursor(row_factory=dict_row) as cursor:
            cursor.executemany(driver_sql, params, returning=True)
            rows = []
            while True:
                rows.append(cursor.fetchone())
                if not cursor.nextset():
                    break
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError):  # the connection may be gone
            conn.invalidate()
        raise DBAPIError.instance(
            driver_sql, params, exc, psycopg.Error, dialect=conn.dialect
        ) from exc
    return rows


_DRIVER_SQL: dict[str, str] = {}


class TransitionFunctions(StoreBase):
    """RunStore's PostgreSQL paths: create and finish as one call of their function. The
    statement paths they replace (RunStore._create_in, finish_run) stay in decisions.py,
    for SQLite and for an interrupt or rollback create that finds runs in flight."""

    def _create_by_function(
        self, conn: Connection, new: NewRun, check_strategy: bool, effects: Effects
    ) -> RunRecord | None:
        """_create_in as one call of runqueue_create_run (PostgreSQL). None: the strategy
        must cancel runs in flight, which the statements do (_create_in), nothing written."""
        row = conn.execute(CREATE_RUN, self._create_params(new, check_strategy)).one()
        return with_webhook(conn, self._created(row._mapping, new, effects), new)

    def _create_params(self, new: NewRun, check_strategy: bool) -> dict[str, Any]:
        return dict(
            run_id=new.run_id,
            thread_id=new.thread_id,
            assistant_id=new.assistant_id,
            user_id=new.user_id,
            strategy=new.multitask_strategy.value if new.multitask_strategy else None,
            check_strategy=check_strategy,
            on_disconnect=new.on_disconnect,
            metadata=as_json(new.metadata),
            kwargs=as_json(new.kwargs),
            follow_up_to_run_id=new.follow_up_to_run_id,
            create_thread=new.create_thread,
            own_thread=new.own_thread,
            republish_in=self._republish_in(0),
            after_seconds=new.after_seconds or 0.0,
        )

    @staticmethod
    def _created(row: Mapping[str, Any], new: NewRun, effects: Effects) -> RunRecord | None:
        """What runqueue_create_run answered: the run (queued ones to effects.publish), a
        refusal raised, or None for cancel_first."""
        outcome = CreateOutcome(row["outcome"])
        if outcome is CreateOutcome.conflict:
            raise thread_busy(new.thread_id, row["conflict_run_id"], row["conflict_status"])
        if outcome is CreateOutcome.no_thread:
            raise ThreadNotFoundError(f"no thread {new.thread_id}")
        if outcome is CreateOutcome.cancel_first:
            return None
        run = run_record_of(row)
        # A delayed run is queued unpublished (dispatched_at NULL): the due-run loop's.
        if row["dispatch_state"] == QUEUED and row["dispatched_at"] is not None:
            effects.publish.append(run)
        return run

    def _create_runs_by_function(
        self, conn: Connection, news: Sequence[NewRun], check_strategy: bool, effects: Effects
    ) -> list[RunRecord | RunQueueError]:
        """create_runs on PostgreSQL: runqueue_create_run for each request, pipelined
        (pipelined), in the caller's transaction. The function writes nothing when
        it refuses, so no savepoints. Requests are taken thread by thread, in the order of
        their thread ids (each thread's own requests in the order given): every batch locks
        threads in one order, so two batches never deadlock. A request whose strategy may
        have to cancel runs in flight (interrupt, rollback) ends a pipelined round, as its
        outcome decides what the next request of its thread finds."""
        order = sorted(range(len(news)), key=lambda index: news[index].thread_id)
        outcomes: list[RunRecord | RunQueueError | None] = [None] * len(news)
        cancelling = {
            strategy
            for strategy, on_busy in ON_BUSY_THREAD.items()
            if on_busy is OnBusyThread.cancel
        }
        start = 0
        while start < len(order):
            end = start
            while end < len(order) and not (
                check_strategy and news[order[end]].multitask_strategy in cancelling
            ):
                end += 1
            end = max(end, start + 1)  # a cancelling request is a round of its own
            round_ = order[start:end]
            rows = pipelined(
                conn,
                CREATE_RUN_SQL,
                [self._create_params(news[i], check_strategy) for i in round_],
            )
            for index, row in zip(round_, rows, strict=True):
                new = news[index]
                try:
                    run = self._created(row, new, effects)
                except (ConflictError, ThreadNotFoundError) as refused:
                    outcomes[index] = refused
                    continue
                # cancel_first: its thread is locked and passed the checks; the statements
                # cancel its runs in flight and insert it, in this same transaction.
                run = with_webhook(conn, run, new)
                outcomes[index] = run or self._create_in(conn, new, check_strategy, effects)
            start = end
        # Published in the order requested, as on SQLite, not in the order of thread ids.
        position = {new.run_id: index for index, new in enumerate(news)}
        effects.publish.sort(key=lambda run: position.get(run.run_id, -1))
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    def _finish_by_function(
        self,
        run_id: str,
        status: RunStatus,
        guard: dict[str, Any],
        error_type: str | None,
    ) -> tuple[bool, Effects]:
        """finish_run as one call of runqueue_finish_run (PostgreSQL), its thread's next
        held run released in the same call."""
        effects = Effects()
        params = dict(
            guard,
            run_id=run_id,
            status=status.value,
            result=as_json(guard["result"]),
            from_statuses=list(guard["from_statuses"]),
            republish_in=self._republish_in(0),
        )
        with self.single_statement() as conn:
            row = conn.execute(FINISH_RUN, params).one()
        if not row.changed:
            return False, effects
        if row.run_id is not None and row.dispatched_at is not None:  # else not due yet
            effects.publish.append(run_record(row))
        error, detail = guard["error"], guard["detail"]
        effects.ended.append(RunEnding(run_id, status, error, error_type, detail or error))
        return True, effects

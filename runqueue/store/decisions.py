"""RunStore: every SQL statement that changes a run, in one object.

Each state change is one guarded UPDATE whose row count says whether it won, so a late or
duplicate caller can never move a run out of a final status. This module holds the
thread-level decisions (create with a strategy, cancel, finish and release the next run);
claims.py holds what a worker writes about its own run; outbox.py the relay's and reaper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, insert, update

from runqueue.errors import ConflictError, RunQueueError, ThreadNotFoundError
from runqueue.records import AbortAction, RunRecord, RunStatus
from runqueue.store.api_keys import ApiKeyStatements
from runqueue.store.assistants import AssistantStatements
from runqueue.store.claims import LEASE_OVER, ExecutionStatements
from runqueue.store.cron_fires import CronFireStatements
from runqueue.store.due_runs import DueRunStatements
from runqueue.store.effects import Effects, NewRun, RunEnding, thread_busy
from runqueue.store.fleet import FleetStatements
from runqueue.store.functions import TransitionFunctions
from runqueue.store.graph_writes import GraphWriteStatements, delete_graph_writes
from runqueue.store.items import ItemStatements
from runqueue.store.maintenance_lock import MaintenanceLockStatements
from runqueue.store.models import CheckpointRow, Run
from runqueue.store.outbox import OutboxStatements
from runqueue.store.rows import RUN_COLUMNS, run_record
from runqueue.store.strategies import ON_BUSY_THREAD, OnBusyThread
from runqueue.store.threads import ThreadStatements
from runqueue.store.transactions import (
    HELD,
    IS_INFLIGHT,
    PENDING,
    QUEUED,
    RUNNING,
    db_now,
    db_now_plus,
    holds_thread,
    status_in,
)

# Built once, parameters bound per execution (keys are column names: `metadata`, and
# `republish_in`: seconds until the relay publishes a queued run again; `after_seconds`: a
# delayed run's delay). The times are the database's, in the statement itself.
DELAYED, HELD_DELAYED = "delayed", "held_delayed"
INSERT_RUN = {
    QUEUED: insert(Run.__table__)
    .values(
        created_at=db_now(),
        updated_at=db_now(),
        dispatch_state=QUEUED,
        dispatched_at=db_now(),
        next_publish_at=db_now_plus(bindparam("republish_in")),
    )
    .returning(*RUN_COLUMNS),
    HELD: insert(Run.__table__)
    .values(
        created_at=db_now(),
        updated_at=db_now(),
        dispatch_state=HELD,
        dispatched_at=None,
        next_publish_at=None,
    )
    .returning(*RUN_COLUMNS),
    # A delayed run (after_seconds) on a free thread: queued, but left unpublished until its
    # due time, when the due-run loop claims its publish (store/due_runs.py).
    DELAYED: insert(Run.__table__)
    .values(
        created_at=db_now(),
        updated_at=db_now(),
        dispatch_state=QUEUED,
        dispatched_at=None,
        next_publish_at=db_now_plus(bindparam("after_seconds")),
        due_at=db_now_plus(bindparam("after_seconds")),
    )
    .returning(*RUN_COLUMNS),
    # A delayed run held behind its thread: its due time recorded, nothing to publish.
    HELD_DELAYED: insert(Run.__table__)
    .values(
        created_at=db_now(),
        updated_at=db_now(),
        dispatch_state=HELD,
        dispatched_at=None,
        next_publish_at=None,
        due_at=db_now_plus(bindparam("after_seconds")),
    )
    .returning(*RUN_COLUMNS),
}
# A released run that is not due yet stays unpublished until its due time (due-run loop).
_NOT_DUE = Run.due_at > db_now()


class RunStore(
    TransitionFunctions,
    ExecutionStatements,
    OutboxStatements,
    DueRunStatements,
    GraphWriteStatements,
    ThreadStatements,
    ApiKeyStatements,
    FleetStatements,
    MaintenanceLockStatements,
    CronFireStatements,
    ItemStatements,
    AssistantStatements,
):
    """The SQL side of runqueue, bound to one database URL."""

    def create_run(self, new: NewRun, *, check_strategy: bool) -> tuple[RunRecord, Effects]:
        """Apply the thread's strategy and record the run, in one thread-locked transaction.
        ConflictError (reject) or ThreadNotFoundError, with nothing written."""
        effects = Effects()
        if self.has_functions and new.webhook is None:
            with self.single_statement() as conn:
                run = self._create_by_function(conn, new, check_strategy, effects)
            if run is not None:
                return run, effects
        elif self.has_functions:  # the webhook is a second statement: one transaction
            with self.transaction() as conn:
                run = self._create_by_function(conn, new, check_strategy, effects)
                run = run or self._create_in(conn, new, check_strategy, effects)
            return run, effects
        with self.transaction() as conn:
            run = self._create_in(conn, new, check_strategy, effects)
        return run, effects

    def create_runs(
        self, news: Sequence[NewRun], *, check_strategy: bool
    ) -> tuple[list[RunRecord | RunQueueError], Effects]:
        """create_run for many requests in one transaction, each thread's strategy applied in
        the order given. A request its strategy refuses (ConflictError) or whose thread may
        not be used (ThreadNotFoundError) is returned as that error, in its place, with
        nothing of it written (SQLite: a savepoint each; PostgreSQL: the function writes
        nothing when it refuses); the others are recorded."""
        effects = Effects()
        if not news:
            return [], effects
        with self.transaction() as conn:
            if self.has_functions:
                return self._create_runs_by_function(conn, news, check_strategy, effects), effects
            outcomes: list[RunRecord | RunQueueError] = []
            for new in news:
                try:
                    with conn.begin_nested():
                        outcomes.append(self._create_in(conn, new, check_strategy, effects))
                except (ConflictError, ThreadNotFoundError) as refused:
                    outcomes.append(refused)
        return outcomes, effects

    def _create_in(
        self, conn: Connection, new: NewRun, check_strategy: bool, effects: Effects
    ) -> RunRecord:
        """Lock the thread, apply its strategy, insert the run and its first event. The run
        goes to effects.publish if it was queued (not held behind its thread)."""
        self.lock_thread(
            conn, new.thread_id, new.user_id, create=new.create_thread, owned=new.own_thread
        )
        strategy = new.multitask_strategy
        inflight = self._inflight(conn, new.thread_id)
        if not inflight:
            self.name_graph(conn, new.thread_id, new.assistant_id)
        busy = any(holds_thread(row) for row in inflight)
        if check_strategy and strategy is not None:
            on_busy = ON_BUSY_THREAD[strategy]
            if inflight and on_busy is OnBusyThread.refuse:
                raise thread_busy(new.thread_id, inflight[0].run_id, inflight[0].status)
            if on_busy is OnBusyThread.cancel:
                action = AbortAction(strategy.value)
                # Pending runs end now; running ones hold the thread until they stop.
                outcomes = [
                    self._request_cancel(conn, row.run_id, action, effects) for row in inflight
                ]
                busy = RunStatus.running in outcomes
        state = HELD if busy else QUEUED
        values = dict(
            run_id=new.run_id,
            thread_id=new.thread_id,
            assistant_id=new.assistant_id,
            user_id=new.user_id,
            status=PENDING,
            multitask_strategy=strategy.value if strategy else None,
            on_disconnect=new.on_disconnect,
            metadata=new.metadata,
            kwargs=new.kwargs,
            follow_up_to_run_id=new.follow_up_to_run_id,
            publish_count=0,
            attempt=0,
            webhook=new.webhook,
        )
        delayed = new.after_seconds is not None and new.after_seconds > 0
        if delayed:
            values["after_seconds"] = new.after_seconds
        elif state == QUEUED:
            values["republish_in"] = self._republish_in(0)
        statement = {QUEUED: DELAYED, HELD: HELD_DELAYED}[state] if delayed else state
        row = conn.execute(INSERT_RUN[statement], values).one()
        self._record_event(
            conn,
            run_id=new.run_id,
            thread_id=new.thread_id,
            status=RunStatus.pending,
            detail=state,
        )
        run = run_record(row)
        if state == QUEUED and not delayed:
            effects.publish.append(run)
        return run

    def cancel_run(
        self,
        run_id: str,
        action: AbortAction,
        user_id: str | None = None,
        *,
        uncancelled_only: bool = False,
    ) -> tuple[bool, Effects]:
        """Cancel a pending or running run; False if it was already final (or not found).
        uncancelled_only: False too for a running run whose cancel is already recorded (a
        revoke runqueue sent itself), whose action must stay as it was asked."""
        effects = Effects()
        with self.transaction() as conn:
            thread_id = self._lock_thread_of(conn, run_id, user_id)
            if thread_id is None:
                return False, effects
            left_in = self._request_cancel(
                conn, run_id, action, effects, uncancelled_only=uncancelled_only
            )
            cancelled = left_in is not None
            if cancelled:
                effects.publish.extend(self._advance_thread(conn, thread_id))
        return cancelled, effects

    def _request_cancel(
        self,
        conn: Connection,
        run_id: str,
        action: AbortAction,
        effects: Effects,
        *,
        uncancelled_only: bool = False,
    ) -> RunStatus | None:
        """Stop a pending run at once; ask a running one to stop (its process writes the end).
        Returns the status the run is left in (interrupted, or running until its process has
        stopped); None if it had already ended."""
        row = conn.execute(
            update(Run)
            .where(Run.run_id == run_id, Run.status == PENDING)
            .values(
                status=RunStatus.interrupted.value,
                abort_action=action.value,
                cancel_requested_at=db_now(),
                ended_at=db_now(),
                updated_at=db_now(),
            )
            .returning(Run.thread_id)
        ).first()
        if row is not None:
            left_in = RunStatus.interrupted
            detail = f"cancelled before start ({action.value})"
            effects.ended.append(RunEnding(run_id, RunStatus.interrupted, detail=detail))
            self._record_event(
                conn,
                run_id=run_id,
                thread_id=row.thread_id,
                status=RunStatus.interrupted,
                detail=detail,
            )
        else:
            # Running: the status stays `running` until the process has really stopped, so
            # the thread's next run cannot start while the old one still executes.
            row = conn.execute(
                update(Run)
                .where(
                    Run.run_id == run_id,
                    Run.status == RUNNING,
                    *([Run.abort_action.is_(None)] if uncancelled_only else []),
                )
                .values(
                    abort_action=action.value, cancel_requested_at=db_now(), updated_at=db_now()
                )
                .returning(Run.thread_id, Run.worker)
            ).first()
            if row is None:
                return None
            left_in = RunStatus.running
            effects.terminate.append((run_id, row.worker))
        if action is AbortAction.rollback:
            # The run's state goes in the cancel's own transaction, under the run row's lock:
            # the fenced writes wait for it, then see the abort and write nothing more.
            conn.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            delete_graph_writes(conn, run_id)
        return left_in

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        token: str | None = None,
        result: Any = None,
        error: str | None = None,
        error_type: str | None = None,
        worker: str | None = None,
        detail: str | None = None,
        from_statuses: Sequence[str] = (RUNNING,),
        claimed_by: str | None = None,
        lease_over: bool = False,
    ) -> tuple[bool, Effects]:
        """Write a final status, guarded, and release the thread's next run in the same
        transaction. False when the run was already final (a late or duplicate signal).
        `claimed_by`: only if this worker holds the claim (a writer that has no token: the
        worker's main process, for a pool child it lost)."""
        effects = Effects()
        if self.has_functions:
            return self._finish_by_function(
                run_id,
                status,
                dict(
                    token=token,
                    result=result,
                    error=error,
                    worker=worker,
                    detail=detail,
                    from_statuses=from_statuses,
                    claimed_by=claimed_by,
                    lease_over=lease_over,
                ),
                error_type,
            )
        with self.transaction() as conn:
            thread_id = self._lock_thread_of(conn, run_id)
            if thread_id is None:
                return False, effects
            guard = [Run.run_id == run_id, status_in(from_statuses)]
            if token is not None:
                guard.append(Run.claim_token == token)
            if claimed_by is not None:
                guard.append(Run.worker == claimed_by)
            if lease_over:  # the reaper: never a run whose lease was renewed since it looked
                guard.append(LEASE_OVER)
            values: dict[str, Any] = dict(
                status=status.value, ended_at=db_now(), updated_at=db_now(), lease_expires_at=None
            )
            if result is not None:
                values["result"] = result
            if error is not None:
                values["error"] = error
            if worker is not None:
                values["worker"] = worker
            row = conn.execute(
                update(Run).where(*guard).values(**values).returning(Run.abort_action)
            ).first()
            if row is None:
                return False, effects
            self._record_event(
                conn,
                run_id=run_id,
                thread_id=thread_id,
                status=status,
                worker=worker,
                detail=detail or error,
            )
            effects.publish.extend(self._advance_thread(conn, thread_id))
        effects.ended.append(RunEnding(run_id, status, error, error_type, detail or error))
        return True, effects

    def _advance_thread(self, conn: Connection, thread_id: str) -> list[RunRecord]:
        """If the thread is free, queue its oldest held run (FIFO). Thread lock required."""
        inflight = self._inflight(conn, thread_id)
        if any(holds_thread(row) for row in inflight):
            return []
        if not inflight:  # every run left is pending and held, oldest first
            return []
        row = conn.execute(
            update(Run)
            .where(Run.run_id == inflight[0].run_id, Run.dispatch_state == HELD)
            .values(
                dispatch_state=QUEUED,
                dispatched_at=case((_NOT_DUE, None), else_=db_now()),
                updated_at=db_now(),
                next_publish_at=case(
                    (_NOT_DUE, Run.due_at), else_=db_now_plus(self._republish_in(0))
                ),
                publish_count=0,
            )
            .returning(*RUN_COLUMNS)
        ).first()
        # Not due yet: queued unpublished; the due-run loop publishes it when due.
        return [] if row is None or row.dispatched_at is None else [run_record(row)]

    def delete_finished_run(self, run_id: str) -> bool:
        """Delete a run that reached a final status, with its events and checkpoints."""
        with self.transaction() as conn:
            deleted = conn.execute(delete(Run).where(Run.run_id == run_id, ~IS_INFLIGHT)).rowcount
        return deleted == 1

"""SyncRunManager: every status write a caller makes (create with the thread's strategy,
cancel, set a final status) and the deletion of a finished run, composed with the reading,
joining and thread methods into the registry for scripts and Celery code."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Unpack

from celery import Celery

from runqueue import validation
from runqueue.celery import task_events
from runqueue.celery.dispatch import apply_effects
from runqueue.errors import InvalidStatusError, RunQueueError, StreamUnavailableError
from runqueue.records import AbortAction, RunRecord, RunStatus
from runqueue.registry.assistants import AssistantRegistry
from runqueue.registry.base import logger
from runqueue.registry.checks import RequestChecks
from runqueue.registry.crons import CronRegistry
from runqueue.registry.joining import RunJoining
from runqueue.registry.reading import RunReading
from runqueue.registry.requests import RunOptions, RunRequest, at_request
from runqueue.registry.thread_state import ThreadStateRegistry
from runqueue.registry.threads import ThreadRegistry
from runqueue.registry.unserved import UnservedAssistants
from runqueue.settings import Settings
from runqueue.store import INFLIGHT, Effects


class SyncRunManager(
    RequestChecks,
    RunReading,
    RunJoining,
    ThreadRegistry,
    ThreadStateRegistry,
    AssistantRegistry,
    CronRegistry,
):
    """The registry for scripts and Celery code; every method is one or two transactions."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None):
        super().__init__(app, settings)
        self._unserved = UnservedAssistants(self.store, self.settings)

    # -- creating ---------------------------------------------------------------------------

    def create(
        self, thread_id: str, assistant_id: str | None = None, **options: Unpack[RunOptions]
    ) -> RunRecord:
        """Record and enqueue a run without applying the strategy; it still waits for any
        run of its thread that is executing."""
        return self._create(thread_id, assistant_id, options, check_strategy=False)

    def create_or_reject(
        self, thread_id: str, assistant_id: str | None = None, **options: Unpack[RunOptions]
    ) -> RunRecord:
        """Apply the thread's multitask strategy atomically, then record and enqueue the run."""
        return self._create(thread_id, assistant_id, options, check_strategy=True)

    def _create(
        self,
        thread_id: str,
        assistant_id: str | None,
        options: RunOptions,
        *,
        check_strategy: bool,
    ) -> RunRecord:
        unexpected = sorted(options.keys() - RunOptions.__optional_keys__)
        if unexpected:
            method = "create_or_reject" if check_strategy else "create"
            raise TypeError(f"{method}() got an unexpected keyword argument {unexpected[0]!r}")
        assistant_id, options = self._on_assistant(assistant_id, options)  # type: ignore[assignment]
        new = self._new_run(thread_id, assistant_id, options)
        self.app.tasks[new.assistant_id].check_fork_point(new.thread_id, new.kwargs or {})
        self._unserved.warn_if_unserved(new.assistant_id)
        run, effects = self.store.create_run(new, check_strategy=check_strategy)
        self._after_create(effects, [run])
        return run

    def create_many(
        self, requests: Sequence[RunRequest], *, check_strategy: bool = True
    ) -> list[RunRecord | RunQueueError]:
        """Record many runs in one transaction, each thread's strategy applied in the order
        given, then publish them in pipelined rounds. Every request is checked first, as
        create_or_reject() checks one: the first invalid one raises its error (the same type,
        its message naming the request's index, `index` set), and nothing is written.
        Returns one outcome per request, in order: its run, or the ConflictError (reject on a
        busy thread) or ThreadNotFoundError that refused it, nothing of it written."""
        if not requests:
            return []
        news = []
        for index, request in enumerate(requests):
            try:
                new = self._new_run_of(request)
                self.app.tasks[new.assistant_id].check_fork_point(new.thread_id, new.kwargs or {})
                news.append(new)
            except RunQueueError as error:
                raise at_request(index, error) from None
        for assistant_id in dict.fromkeys(new.assistant_id for new in news):
            self._unserved.warn_if_unserved(assistant_id)
        outcomes, effects = self.store.create_runs(news, check_strategy=check_strategy)
        self._after_create(effects, [run for run in outcomes if isinstance(run, RunRecord)])
        return outcomes

    def _after_create(self, effects: Effects, runs: list[RunRecord]) -> None:
        """After the commit: the effects, then a task-sent event for each new run that is
        held behind its thread or delayed (not published, so only this tells Flower it
        exists). A run
        a later request of the same batch already interrupted is not published at all."""
        ended = {ending.run_id for ending in effects.ended}
        effects.publish = [run for run in effects.publish if run.run_id not in ended]
        apply_effects(self.app, self.runtime, effects)
        published = {run.run_id for run in effects.publish}
        for run in runs:
            if run.run_id not in published and run.run_id not in ended:
                task_events.announce_held(self.app, run, self.settings.flower_payloads)

    # -- changing -----------------------------------------------------------------------------

    def set_status(self, run_id: str, status: RunStatus | str, *, error: str | None = None) -> bool:
        """Move a pending or running run to a final status; False if it already was final."""
        status = validation.status(status)
        if not status.is_final:
            raise InvalidStatusError(
                f"set_status takes a final status; {status.value!r} is written by the worker"
            )
        changed, effects = self.store.finish_run(
            validation.run_id(run_id),
            status,
            error=error,
            detail="set_status",
            from_statuses=INFLIGHT,
        )
        apply_effects(self.app, self.runtime, effects)
        return changed

    def cancel(
        self,
        run_id: str,
        *,
        action: AbortAction | str = AbortAction.interrupt,
        user_id: str | None = None,
    ) -> bool:
        """Cancel a pending or running run; True only if it was pending or running (False
        for an unknown or malformed id, or another user's run).

        A pending run is interrupted at once and never executes. A running run's process is
        terminated (SIGTERM, so its finally blocks run); it reads `interrupted` once stopped.
        """
        action = validation.abort_action(action)
        if not validation.is_run_id(run_id):
            return False
        cancelled, effects = self.store.cancel_run(
            validation.run_id(run_id), action, validation.user_id(user_id)
        )
        apply_effects(self.app, self.runtime, effects)
        return cancelled

    def cleanup(self, run_id: str, *, delay: float = 0.0) -> bool:
        """Delete a finished run's record (with its events and checkpoints) after `delay` s."""
        run_id = validation.run_id(run_id)
        if delay > 0:
            time.sleep(delay)
        deleted = self.store.delete_finished_run(run_id)
        if deleted:
            try:
                self.runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)
        return deleted

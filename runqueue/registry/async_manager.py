"""RunManager: the async twin of SyncRunManager, for the HTTP API and other event loops."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from celery import Celery

from runqueue import validation
from runqueue.records import AssistantRecord, RunRecord, StreamEvent
from runqueue.registry.sync_manager import SyncRunManager
from runqueue.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


def _in_thread(
    method: Callable[Concatenate[SyncRunManager, P], R],
) -> Callable[Concatenate[RunManager, P], Coroutine[Any, Any, R]]:
    """The async twin of a SyncRunManager method: the same signature and docstring, run in a
    worker thread."""

    @functools.wraps(method)
    async def twin(self: RunManager, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    twin.__qualname__ = f"RunManager.{method.__name__}"
    return twin


class RunManager:
    """The async registry: swap it in for the in-memory one; same names, same meaning."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None):
        self.sync = SyncRunManager(app, settings)

    create = _in_thread(SyncRunManager.create)
    create_or_reject = _in_thread(SyncRunManager.create_or_reject)
    create_many = _in_thread(SyncRunManager.create_many)
    validate_many = _in_thread(SyncRunManager.validate_many)
    get = _in_thread(SyncRunManager.get)
    list_by_thread = _in_thread(SyncRunManager.list_by_thread)
    list_runs = _in_thread(SyncRunManager.list_runs)
    has_inflight = _in_thread(SyncRunManager.has_inflight)
    count_inflight_of_user = _in_thread(SyncRunManager.count_inflight_of_user)
    events = _in_thread(SyncRunManager.events)
    checkpoints = _in_thread(SyncRunManager.checkpoints)
    workers = _in_thread(SyncRunManager.workers)
    why_pending = _in_thread(SyncRunManager.why_pending)
    threads = _in_thread(SyncRunManager.threads)
    state = _in_thread(SyncRunManager.state)
    state_at = _in_thread(SyncRunManager.state_at)
    history = _in_thread(SyncRunManager.history)
    update_state = _in_thread(SyncRunManager.update_state)
    create_thread = _in_thread(SyncRunManager.create_thread)
    get_thread = _in_thread(SyncRunManager.get_thread)
    search_threads = _in_thread(SyncRunManager.search_threads)
    delete_thread = _in_thread(SyncRunManager.delete_thread)
    count_threads = _in_thread(SyncRunManager.count_threads)
    patch_thread = _in_thread(SyncRunManager.patch_thread)
    copy_thread = _in_thread(SyncRunManager.copy_thread)
    prune_threads = _in_thread(SyncRunManager.prune_threads)
    set_status = _in_thread(SyncRunManager.set_status)
    cancel = _in_thread(SyncRunManager.cancel)
    create_cron = _in_thread(SyncRunManager.create_cron)
    get_cron = _in_thread(SyncRunManager.get_cron)
    search_crons = _in_thread(SyncRunManager.search_crons)
    count_crons = _in_thread(SyncRunManager.count_crons)
    update_cron = _in_thread(SyncRunManager.update_cron)
    delete_cron = _in_thread(SyncRunManager.delete_cron)
    cron_fires = _in_thread(SyncRunManager.cron_fires)
    cron_of_run = _in_thread(SyncRunManager.cron_of_run)
    get_assistant = _in_thread(SyncRunManager.get_assistant)
    create_assistant = _in_thread(SyncRunManager.create_assistant)
    patch_assistant = _in_thread(SyncRunManager.patch_assistant)
    set_assistant_version = _in_thread(SyncRunManager.set_assistant_version)
    delete_assistant = _in_thread(SyncRunManager.delete_assistant)
    assistant_versions = _in_thread(SyncRunManager.assistant_versions)
    search_assistants = _in_thread(SyncRunManager.search_assistants)
    count_assistants = _in_thread(SyncRunManager.count_assistants)
    webhook_delivery = _in_thread(SyncRunManager.webhook_delivery)

    def assistants(self) -> list[str]:
        """Names of the registered assistants. Not a coroutine, like assistant_name(): both
        read the Celery app's task registry, no I/O."""
        return self.sync.assistants()

    def assistant_name(self, assistant_id: str | None) -> str:
        """The registered assistant a run names (the default if None); UnknownAssistantError
        if this app registers none by that name."""
        return self.sync.assistant_name(assistant_id)

    async def assistant_for_run(
        self, assistant_id: str | None, *, user_id: str | None = None
    ) -> tuple[str, AssistantRecord | None]:
        """What a run on `assistant_id` runs: the registered name, and the stored assistant
        whose config it gets (None: a default, or a name). A thread and a read only for what
        may be a stored assistant's id: a run by name costs what it did."""
        if not self.sync._names_stored(assistant_id):
            return self.sync.assistant_for_run(assistant_id, user_id=user_id)
        return await asyncio.to_thread(self.sync.assistant_for_run, assistant_id, user_id=user_id)

    async def join(self, run_id: str, *, timeout: float = 60.0) -> RunRecord:
        """Wait until the run reaches a final status; TimeoutError if it does not in time.
        Woken by the `end` of the run's stream, without holding a thread while waiting."""
        run_id = validation.run_id(run_id)
        return await self.sync.runtime.stream.await_end(run_id, self.sync._run_of(run_id), timeout)

    async def stream(
        self, run_id: str, *, after: str | int | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The run's events after `after` (an event id; None: from the first), live, through
        its `end`. RunNotFoundError if there is no such run."""
        run_id = validation.run_id(run_id)
        run_of = self.sync._run_of(run_id)
        await asyncio.to_thread(run_of)  # no such run: say so now
        async for event in self.sync.runtime.stream.afollow(run_id, after, run_of):
            yield event

    async def cleanup(self, run_id: str, *, delay: float = 0.0) -> bool:
        """Delete a finished run's record (with its events and checkpoints) after `delay` s."""
        if delay > 0:
            await asyncio.sleep(delay)
        return await asyncio.to_thread(self.sync.cleanup, run_id)

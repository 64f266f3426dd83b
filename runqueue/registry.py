"""RunManager: the registry's public API, the same surface as the in-memory registry it replaces.

SyncRunManager holds the one implementation; RunManager's async methods are its twins, with
the same signatures, run in a worker thread so a database round trip never blocks the event
loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar, Unpack

from celery import Celery

from runqueue import task_events, validation
from runqueue.app import load_app, runtime_of
from runqueue.dispatch import apply_effects
from runqueue.errors import (
    InvalidPayloadError,
    InvalidStatusError,
    RunNotFoundError,
    RunQueueError,
    StreamUnavailableError,
    ThreadNotFoundError,
    UnknownAssistantError,
)
from runqueue.records import (
    AbortAction,
    Checkpoint,
    DisconnectMode,
    MultitaskStrategy,
    RunEvent,
    RunRecord,
    RunStatus,
    StreamEvent,
    ThreadRecord,
    ThreadState,
    ThreadStatus,
    ThreadView,
    WorkerRecord,
)
from runqueue.settings import Settings
from runqueue.store.decisions import Effects, NewRun
from runqueue.store.queries import RunQueries
from runqueue.store.transactions import INFLIGHT
from runqueue.worker.execution import RunTask

logger = logging.getLogger(__name__)

THREAD_SORT_KEYS = ("thread_id", "status", "created_at", "updated_at")
MAX_PAGE = 2**31 - 1  # a larger limit or offset overflows the databases' integers
FLEET_CACHE_SECONDS = 5.0  # create() reads which assistants live workers serve this often


class RunOptions(TypedDict, total=False):
    """The keyword options of create() and create_or_reject(), on both managers. Left out:
    on_disconnect "continue", no metadata, no kwargs, multitask_strategy "reject", no
    follow-up run, no user, if_not_exists "create", own_thread False (runs of several
    users may share a thread)."""

    on_disconnect: DisconnectMode | str
    metadata: dict[str, Any] | None
    kwargs: dict[str, Any] | None  # the assistant's keyword arguments (JSON)
    multitask_strategy: MultitaskStrategy | str
    follow_up_to_run_id: str | None
    user_id: str | None
    if_not_exists: str  # "create" (the default): a new thread id makes a thread; "reject"
    own_thread: bool  # True: the thread must be new or user_id's (the HTTP API's isolation)


@dataclass(frozen=True)
class RunRequest:
    """One run for create_many(): create_or_reject()'s arguments, with its defaults."""

    thread_id: str
    assistant_id: str | None = None  # None: the default assistant
    kwargs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    multitask_strategy: MultitaskStrategy | str = MultitaskStrategy.reject
    on_disconnect: DisconnectMode | str = DisconnectMode.continue_
    follow_up_to_run_id: str | None = None
    user_id: str | None = None
    if_not_exists: str = "create"
    own_thread: bool = False

    @classmethod
    def from_json(cls, value: Any) -> RunRequest:
        """A request from a decoded JSON object (a line of `runqueue submit --from`):
        InvalidPayloadError for anything but an object, an unknown field, no thread_id or a
        non-boolean own_thread. The values themselves are checked by create_many()."""
        if not isinstance(value, Mapping):
            raise InvalidPayloadError(f"a run request is a JSON object, not {type(value).__name__}")
        unknown = sorted(set(value) - REQUEST_FIELDS)
        if unknown:
            raise InvalidPayloadError(
                f"unknown field {validation.shown(unknown[0])} "
                f"(fields: {', '.join(sorted(REQUEST_FIELDS))})"
            )
        if "thread_id" not in value:
            raise InvalidPayloadError("thread_id is required")
        if not isinstance(value.get("own_thread", False), bool):
            raise InvalidPayloadError(
                f"own_thread must be true or false, not {validation.shown(value['own_thread'])}"
            )
        return cls(**value)

    def options(self) -> RunOptions:
        """Its options as create_or_reject() takes them."""
        return RunOptions(
            kwargs=self.kwargs,
            metadata=self.metadata,
            multitask_strategy=self.multitask_strategy,
            on_disconnect=self.on_disconnect,
            follow_up_to_run_id=self.follow_up_to_run_id,
            user_id=self.user_id,
            if_not_exists=self.if_not_exists,
            own_thread=self.own_thread,
        )


REQUEST_FIELDS = frozenset(field.name for field in fields(RunRequest))


class SyncRunManager:
    """The registry for scripts and Celery code; every method is one or two transactions."""

    def __init__(self, app: Celery | None = None, settings: Settings | None = None):
        if app is None:
            settings = settings or Settings.from_env()
            app = load_app(settings.app)
        self.app = app
        runtime = runtime_of(app)
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = runtime.store
        self.queries = RunQueries(runtime.store)
        # (read again after, assistants live workers serve or None if unreadable), for create()
        self._served: tuple[float, frozenset[str] | None] = (0.0, None)
        self._warned: set[str] = set()

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
        new = self._new_run(thread_id, assistant_id, options)
        self._warn_if_unserved(new.assistant_id)
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
                news.append(self._new_run_of(request))
            except RunQueueError as error:
                raise _at_request(index, error) from None
        for assistant_id in dict.fromkeys(new.assistant_id for new in news):
            self._warn_if_unserved(assistant_id)
        outcomes, effects = self.store.create_runs(news, check_strategy=check_strategy)
        self._after_create(effects, [run for run in outcomes if isinstance(run, RunRecord)])
        return outcomes

    def validate_many(self, requests: Sequence[RunRequest]) -> list[RunQueueError | None]:
        """Why each request would be refused before anything is written (None: valid), as
        create_many() checks them: for a caller that reports every bad request at once
        (`runqueue submit --from`). Reads no database."""
        problems: list[RunQueueError | None] = []
        for request in requests:
            try:
                self._new_run_of(request)
            except RunQueueError as error:
                problems.append(error)
            else:
                problems.append(None)
        return problems

    def _new_run(self, thread_id: str, assistant_id: str | None, options: RunOptions) -> NewRun:
        """A request checked and made ready to write: the typed error of the first bad value."""
        limit = self.settings.max_payload_bytes
        follow_up_to = options.get("follow_up_to_run_id")
        new = NewRun(
            run_id=validation.new_run_id(),
            thread_id=validation.thread_id(thread_id),
            assistant_id=self.assistant_name(assistant_id),
            user_id=validation.user_id(options.get("user_id")),
            multitask_strategy=validation.strategy(
                options.get("multitask_strategy", MultitaskStrategy.reject)
            ),
            on_disconnect=validation.disconnect_mode(
                options.get("on_disconnect", DisconnectMode.continue_)
            ).value,
            metadata=validation.json_object("metadata", options.get("metadata"), limit),
            kwargs=validation.json_object("kwargs", options.get("kwargs"), limit),
            follow_up_to_run_id=validation.run_id(follow_up_to) if follow_up_to else None,
            create_thread=validation.if_not_exists(options.get("if_not_exists", "create")),
            own_thread=bool(options.get("own_thread", False)),
        )
        self.app.tasks[new.assistant_id].check_kwargs(new.thread_id, new.kwargs or {})
        return new

    def _new_run_of(self, request: RunRequest) -> NewRun:
        return self._new_run(request.thread_id, request.assistant_id, request.options())

    def _after_create(self, effects: Effects, runs: list[RunRecord]) -> None:
        """After the commit: the effects, then a task-sent event for each new run that is
        held behind its thread (not published, so only this tells Flower it exists). A run
        a later request of the same batch already interrupted is not published at all."""
        ended = {ending.run_id for ending in effects.ended}
        effects.publish = [run for run in effects.publish if run.run_id not in ended]
        apply_effects(self.app, effects)
        published = {run.run_id for run in effects.publish}
        for run in runs:
            if run.run_id not in published and run.run_id not in ended:
                task_events.announce_held(self.app, run, self.settings.flower_payloads)

    def assistant_name(self, assistant_id: str | None) -> str:
        """The registered assistant a run names (the default if None); UnknownAssistantError
        if this app registers none by that name."""
        name = assistant_id or self.settings.default_assistant
        if not name:
            raise UnknownAssistantError("no assistant_id given and no default assistant is set")
        task = self.app.tasks.get(name)
        if not isinstance(task, RunTask):
            known = ", ".join(self.assistants()) or "none"
            raise UnknownAssistantError(f"unknown assistant {name!r} (registered: {known})")
        return name

    def assistants(self) -> list[str]:
        """Names of the registered assistants."""
        return sorted(name for name, task in self.app.tasks.items() if isinstance(task, RunTask))

    def _warn_if_unserved(self, assistant_id: str) -> None:
        """One warning line when no live worker serves the assistant. Not refused: runs may
        be created before the workers start. The fleet is read once per FLEET_CACHE_SECONDS
        (create is the hot path), and each assistant warned about once per read."""
        now = time.monotonic()
        read_after, served = self._served
        if now >= read_after:
            try:
                live = self.store.live_workers(self.settings.lease_seconds)
                served = frozenset(name for worker in live for name in worker.assistants)
            except Exception as exc:  # an older schema, a blip: no warning, the create goes on
                logger.debug("could not read the fleet: %s", exc)
                served = None
            self._served = (now + FLEET_CACHE_SECONDS, served)
            self._warned = set()
        if served is None or assistant_id in served or assistant_id in self._warned:
            return
        self._warned.add(assistant_id)
        logger.warning(
            "no live worker serves assistant %r: its runs stay pending until one does "
            "(workers serving it were not seen within the last %gs)",
            assistant_id,
            self.settings.lease_seconds,
            extra={"action": "unserved"},
        )

    # -- reading ------------------------------------------------------------------------------

    def get(self, run_id: str, *, user_id: str | None = None) -> RunRecord | None:
        """The run; None for an unknown or malformed id, or another user's run."""
        if not validation.is_run_id(run_id):
            return None
        return self.queries.get(validation.run_id(run_id), validation.user_id(user_id))

    def list_by_thread(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunRecord]:
        """The thread's runs, newest first."""
        return self.queries.list_by_thread(
            validation.thread_id(thread_id),
            user_id=validation.user_id(user_id),
            status=validation.status(status) if status is not None else None,
            limit=limit,
            offset=offset,
        )

    def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        return self.queries.list_runs(
            thread_id=validation.thread_id(thread_id) if thread_id is not None else None,
            status=validation.status(status) if status is not None else None,
            limit=validation.page_limit(limit),
        )

    def has_inflight(self, thread_id: str) -> bool:
        """True if the thread has a pending or running run."""
        return self.queries.has_inflight(validation.thread_id(thread_id))

    def events(self, run_id: str) -> list[RunEvent]:
        """The run's status transitions, oldest first."""
        return self.queries.events(validation.run_id(run_id))

    def workers(self) -> list[WorkerRecord]:
        """The live fleet: workers not stopped whose heartbeat is younger than a lease."""
        return self.store.live_workers(self.settings.lease_seconds)

    def why_pending(self, run_id: str) -> str | None:
        """Why a pending run has not started, in one sentence (for `runqueue show`); None if
        the run is not pending, or unknown."""
        run = self.get(run_id)
        if run is None or run.status is not RunStatus.pending:
            return None
        holder = self.store.thread_holder(run.run_id)
        if holder is not None:
            return f"held behind run {holder[0]} ({holder[1]}) of its thread {run.thread_id}"
        live = self.workers()
        serving = [worker.name for worker in live if run.assistant_id in worker.assistants]
        last = self.events(run.run_id)[-1]
        if not serving:
            others = f" (live workers: {', '.join(w.name for w in live)})" if live else ""
            return f"no live worker serves assistant {run.assistant_id}{others}"
        lately = f"; last: {last.detail}" if last.detail not in (None, "queued", "held") else ""
        return (
            f"waiting for a worker: {len(serving)} live worker(s) serve assistant "
            f"{run.assistant_id} ({', '.join(serving)}){lately}"
        )

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        return self.queries.checkpoints(validation.thread_id(thread_id))

    def threads(self, limit: int = 100) -> list[tuple[ThreadRecord, dict[str, int]]]:
        return self.queries.threads(validation.page_limit(limit))

    def state(self, thread_id: str) -> ThreadState:
        """The thread's current state, as the assistant of its latest run keeps it: a graph's
        values and pending interrupts, or a plain assistant's latest checkpoint."""
        thread_id = validation.thread_id(thread_id)
        latest = self.queries.list_by_thread(thread_id, user_id=None, status=None, limit=1)
        if not latest:  # no run yet: no state
            return ThreadState(thread_id=thread_id, values=None)
        task = self.app.tasks.get(latest[0].assistant_id)
        if not isinstance(task, RunTask):
            raise UnknownAssistantError(
                f"thread {thread_id}'s latest run is of assistant {latest[0].assistant_id!r}, "
                "which this app does not register: its state cannot be read here"
            )
        return task.thread_state(thread_id)

    def join(self, run_id: str, *, timeout: float = 60.0) -> RunRecord:
        """Wait until the run reaches a final status; TimeoutError if it does not in time.
        Woken by the `end` of the run's stream, not by polling the database."""
        run_id = validation.run_id(run_id)
        return self.runtime.stream.wait_for_end(run_id, self._run_of(run_id), timeout)

    def stream(self, run_id: str, *, after: str | int | None = None) -> Iterator[StreamEvent]:
        """The run's events after `after` (an event id; None: from the first), live, through
        its `end`. RunNotFoundError if there is no such run."""
        run_id = validation.run_id(run_id)
        run_of = self._run_of(run_id)
        run_of()  # no such run: say so now, not at the first silence
        return self.runtime.stream.follow(run_id, after, run_of)

    def _run_of(self, run_id: str) -> Callable[[], RunRecord]:
        """Reads the run from the database; RunNotFoundError if it was never there (or was
        deleted)."""

        def run_of() -> RunRecord:
            run = self.queries.get(run_id, None)
            if run is None:
                raise RunNotFoundError(f"no run {run_id}")
            return run

        return run_of

    # -- threads ------------------------------------------------------------------------------

    def create_thread(
        self,
        thread_id: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        if_exists: str = "raise",
        user_id: str | None = None,
    ) -> ThreadRecord:
        """A new thread (a UUID if no id is given). If it exists: ThreadExistsError
        (`raise`), or the existing thread (`do_nothing`) if it is this user's."""
        if if_exists not in ("raise", "do_nothing"):
            raise InvalidPayloadError(f"invalid if_exists {if_exists!r} (raise or do_nothing)")
        return self.store.create_thread(
            validation.thread_id(thread_id) if thread_id is not None else str(uuid.uuid4()),
            validation.user_id(user_id),
            validation.json_object("metadata", metadata, self.settings.max_payload_bytes),
            if_exists=if_exists,
        )

    def get_thread(self, thread_id: str, *, user_id: str | None = None) -> ThreadView | None:
        """The thread with its status; None if unknown, malformed, or another user's."""
        if not validation.is_thread_id(thread_id):
            return None
        return self.store.get_thread(thread_id, validation.user_id(user_id))

    def search_threads(
        self,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ids: list[str] | None = None,
        status: ThreadStatus | str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[ThreadView]:
        """Threads whose metadata contains `metadata`, among `ids`, in `status`; newest
        first unless `sort_by` (thread_id, status, created_at, updated_at) and `sort_order`
        (asc, desc) say otherwise."""
        if not (0 <= limit <= MAX_PAGE and 0 <= offset <= MAX_PAGE):
            raise InvalidPayloadError(f"limit and offset must be between 0 and {MAX_PAGE}")
        if sort_by not in THREAD_SORT_KEYS or sort_order not in ("asc", "desc"):
            raise InvalidPayloadError(
                f"sort_by must be one of {', '.join(THREAD_SORT_KEYS)}, sort_order asc or desc"
            )
        return self.store.search_threads(
            user_id=validation.user_id(user_id),
            metadata=validation.json_object("metadata", metadata, self.settings.max_payload_bytes),
            ids=[i for i in ids if validation.is_thread_id(i)] if ids is not None else None,
            status=validation.thread_status(status) if status is not None else None,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            descending=sort_order == "desc",
        )

    def delete_thread(self, thread_id: str, *, user_id: str | None = None) -> None:
        """Delete the thread, its runs, their history and its graph state. ThreadBusyError
        while a run is in flight (cancel it first); ThreadNotFoundError if there is no such
        thread of this user's."""
        if not validation.is_thread_id(thread_id):
            raise ThreadNotFoundError(f"no thread {thread_id}")
        for run_id in self.store.delete_thread(thread_id, validation.user_id(user_id)):
            try:
                self.runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)

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
        apply_effects(self.app, effects)
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
        apply_effects(self.app, effects)
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


def _at_request(index: int, error: RunQueueError) -> RunQueueError:
    """The error of request `index` of a batch: the same type, saying which request it was
    (in its message and its `index` attribute)."""
    located = type(error)(f"request {index}: {error}")
    located.index = index
    return located


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
    events = _in_thread(SyncRunManager.events)
    checkpoints = _in_thread(SyncRunManager.checkpoints)
    workers = _in_thread(SyncRunManager.workers)
    why_pending = _in_thread(SyncRunManager.why_pending)
    threads = _in_thread(SyncRunManager.threads)
    state = _in_thread(SyncRunManager.state)
    create_thread = _in_thread(SyncRunManager.create_thread)
    get_thread = _in_thread(SyncRunManager.get_thread)
    search_threads = _in_thread(SyncRunManager.search_threads)
    delete_thread = _in_thread(SyncRunManager.delete_thread)
    set_status = _in_thread(SyncRunManager.set_status)
    cancel = _in_thread(SyncRunManager.cancel)

    def assistants(self) -> list[str]:
        """Names of the registered assistants. Not a coroutine, like assistant_name(): both
        read the Celery app's task registry, no I/O."""
        return self.sync.assistants()

    def assistant_name(self, assistant_id: str | None) -> str:
        """The registered assistant a run names (the default if None); UnknownAssistantError
        if this app registers none by that name."""
        return self.sync.assistant_name(assistant_id)

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

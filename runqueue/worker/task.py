"""The Celery task base for assistants (RunTask) and the decorator that registers one.

An assistant is a Celery task whose body takes a RunContext first:

    @assistant(app)
    def chat(context, prompt): ...

Its __call__ is the Celery entry point of one attempt: it looks the Runtime up once, claims
the run and executes the body under an Attempt (attempt.py), then leaves the run as the body
ended; the signals (signals.py) write the final status.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Ignore

from runqueue import validation
from runqueue.celery import task_events
from runqueue.celery.app import runtime_of
from runqueue.errors import (
    CheckpointNotFoundError,
    InvalidKwargsError,
    InvalidPayloadError,
    NoThreadGraphError,
    RunCancelledError,
    describe,
)
from runqueue.records import CheckpointRef, ThreadState
from runqueue.runtime import Runtime
from runqueue.store import ClaimOutcome, RunQueries
from runqueue.worker.attempt import Attempt
from runqueue.worker.retries import NO_RETRY, RetryPolicy
from runqueue.worker.sigterm import RunTerminatedError, exit_after_run, task_started

logger = logging.getLogger(__name__)

# RunTask.__call__(self, thread_id, **kwargs): a run's kwargs may not use these names.
RESERVED_KWARGS = frozenset({"self", "thread_id"})


class RunTask(Task):
    """Base class of every assistant task."""

    typing = False  # the message carries (thread_id, **kwargs); the body takes a context
    # Celery's task events for a run, corrected where runqueue knows better (for Flower).
    Request = "runqueue.worker.task_request:RunRequest"
    # Any exception ends the run with a status (error, interrupted, timeout): Celery logs it
    # at INFO without a traceback, runqueue's RunRequest logs it with one (task_request.py).
    throws = (Exception,)
    run_retry: RetryPolicy | None = None  # per assistant: @assistant(app, run_retry=...)
    # True: the kwargs are the LangGraph runs API's fields (input, config, command,
    # stream_mode), as a graph takes them; False: `input` is the task's keyword arguments.
    takes_run_fields = False
    # Keyword arguments this assistant refuses when a run is created (422 over HTTP): an
    # option its function has that this deployment must not offer to submitters
    # (`@assistant(app, refused_kwargs=frozenset({"journal"}))`).
    refused_kwargs: frozenset[str] = frozenset()

    def check_fork_point(self, thread_id: str, kwargs: dict[str, Any]) -> None:
        """A run that starts from one of its thread's checkpoints finds it there (a graph's
        fork: runqueue.langgraph). It reads the database, so the creating methods check it,
        not validate_many(). A plain assistant takes no fork point (check_kwargs refuses it)."""

    def check_kwargs(self, thread_id: str, kwargs: dict[str, Any]) -> None:
        """Check a run's kwargs when it is created (InvalidPayloadError): a plain assistant
        takes a JSON object whose keys are not the message's own arguments (the worker
        would fail to call it before it could claim the run) nor its refused ones, and that
        its function can be called with (InvalidKwargsError). A graph assistant checks the
        LangGraph run fields."""
        taken = sorted(RESERVED_KWARGS & kwargs.keys())
        if taken:
            raise InvalidPayloadError(
                f"kwargs may not use the name {taken[0]!r}: runqueue passes it itself"
            )
        refused = sorted(self.refused_kwargs & kwargs.keys())
        if refused:
            raise InvalidPayloadError(
                f"assistant {self.name!r} does not accept {refused[0]!r} here: this "
                "deployment turned that option off"
            )
        check_signature(self.name, self.run, kwargs, self.refused_kwargs)

    def thread_state(
        self,
        thread_id: str,
        *,
        checkpoint: CheckpointRef | None = None,
        subgraphs: bool = False,
    ) -> ThreadState:
        """The thread's state as this assistant keeps it: its latest checkpoint, or the one
        `checkpoint` names (CheckpointNotFoundError). A plain assistant has no subgraphs."""
        found = self.thread_history(thread_id, limit=1, checkpoint=checkpoint)
        if found:
            return found[0]
        if checkpoint is not None and checkpoint.checkpoint_id is not None:
            raise CheckpointNotFoundError(
                f"thread {thread_id} has no checkpoint {checkpoint.checkpoint_id}"
            )
        return ThreadState(thread_id=thread_id, values=None, assistant_id=self.name)

    def thread_history(
        self,
        thread_id: str,
        *,
        limit: int = 10,
        before: str | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: CheckpointRef | None = None,
    ) -> list[ThreadState]:
        """The thread's checkpoints newest first (its runs' context.checkpoint() calls, each
        one's parent the one before it; metadata: the run that wrote it), filtered as a
        graph's history is: older than `before`, metadata holding `metadata`, the one
        checkpoint `checkpoint` names."""
        wanted = dict(metadata or {})
        run_id = wanted.pop("run_id", None)
        if wanted or (run_id is not None and not isinstance(run_id, str)):
            return []  # no plain checkpoint's metadata has another key
        if checkpoint is not None and checkpoint.checkpoint_ns:
            return []  # nor a namespace: a plain assistant has no subgraphs
        named = checkpoint.checkpoint_id if checkpoint is not None else None
        rows = RunQueries(runtime_of(self.app).store).checkpoint_history(
            thread_id,
            limit=limit,
            before=_plain_id(thread_id, before),
            run_id=run_id,
            checkpoint_id=_plain_id(thread_id, named),
        )
        return [
            ThreadState(
                thread_id=thread_id,
                values=found.values,
                checkpoint_id=str(found.checkpoint_id),
                parent_checkpoint_id=None if parent is None else str(parent),
                metadata={"run_id": found.run_id},
                created_at=found.created_at,
                assistant_id=self.name,
            )
            for found, parent in rows
        ]

    def update_thread_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None = None,
        checkpoint: CheckpointRef | None = None,
        user_id: str | None = None,
    ) -> CheckpointRef:
        """Refused: a plain assistant's state is what its runs checkpoint (only a graph's
        state can be updated between runs)."""
        raise NoThreadGraphError(
            f"thread {thread_id}'s assistant {self.name!r} is not a graph: its state is what "
            "its runs checkpoint, and cannot be updated"
        )

    def __call__(self, thread_id: str, **kwargs: Any) -> Any:
        """Claim the run, execute its body under one Attempt, and leave the run as the body
        ended: returned or raised (the signals write the final status), handed back at a
        shutdown, or re-queued for a retry."""
        runtime = runtime_of(self.app)
        task_started()
        outcome, attempt = Attempt.claim(
            runtime,
            self.request.id,
            thread_id,
            worker=self.request.hostname,
            assistant_id=self.name,
        )
        if attempt is None:
            self._skip(runtime, thread_id, outcome)
        self.request.runqueue_execution = attempt.execution  # which delivery registered it
        with attempt:
            try:
                return attempt.execute(self.run, kwargs)
            except RunTerminatedError:
                attempt.after_sigterm()  # a lost lease or a shutdown raises its own error
                raise  # a cancel's SIGTERM (or a refused hand-back): the signals decide
            except RunCancelledError:
                # However the cancel arrived (SIGTERM, a refused checkpoint, the cooperative
                # check), the process that ran a cancelled run stops, with whatever it started.
                exit_after_run()
                raise
            except Exception as error:
                attempt.after_failure(error)  # a lost lease raises LeaseLostError: no retry
                policy = self.run_retry or NO_RETRY
                if not policy.allows(attempt.number, error):
                    raise
                self._retry_later(attempt, policy, error)

    def _skip(self, runtime: Runtime, thread_id: str, outcome: ClaimOutcome) -> NoReturn:
        """This delivery did not win its run: it executes nothing."""
        run_id = self.request.id
        log = {"run_id": run_id, "thread_id": thread_id}
        published_by = getattr(self.request, "runqueue_deployment", None)
        if outcome is ClaimOutcome.missing and published_by not in (None, runtime.deployment_id):
            _say_foreign(runtime, run_id, published_by, self.request.delivery_info)
        else:
            logger.info("run %s not started: %s", run_id, outcome.value, extra=log)
        # Ignore sends no task event: say in Flower what became of this delivery.
        task_events.announce_skip(self.app, runtime.store, run_id, thread_id, outcome)
        raise Ignore()

    def _retry_later(self, attempt: Attempt, policy: RetryPolicy, error: Exception) -> NoReturn:
        """Put the run back to pending (guarded by the claim token), then let Celery's own
        retry publish it again after the backoff. Raises in every case: Retry, or why no
        attempt may follow (LeaseLostError, RunCancelledError)."""
        countdown = policy.delay(attempt.number)
        detail = (
            f"attempt {attempt.number}/{policy.max_attempts} failed, retry in {countdown:g}s: "
            f"{describe(error)}"
        )
        attempt.requeue(countdown, detail, error)
        # Raises celery.exceptions.Retry (or Reject if the broker is down: the relay then
        # publishes the pending run once its backoff has passed).
        raise self.retry(exc=error, countdown=countdown, max_retries=policy.max_attempts)


def check_signature(
    name: str,
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    refused: frozenset[str] = frozenset(),
) -> None:
    """InvalidKwargsError unless `function(context, **kwargs)` binds, as the worker calls an
    assistant's body (Attempt.execute): the RunContext first, then the run's kwargs. A
    function whose signature cannot be read (a builtin, some C callables) is not checked;
    `refused` names are left out of the arguments an error lists."""
    signature = _signature(function)
    if signature is None:
        return
    try:
        signature.bind(None, **kwargs)  # None stands for the RunContext
    except TypeError as error:
        field, message = _unbound(name, signature, kwargs, refused, error)
        raise InvalidKwargsError(message, assistant_id=name, field=field) from None


@functools.lru_cache(maxsize=1024)
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, read once (every create of its runs checks against it);
    None where it cannot be read."""
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def _unbound(
    name: str,
    signature: inspect.Signature,
    kwargs: dict[str, Any],
    refused: frozenset[str],
    error: TypeError,
) -> tuple[str | None, str]:
    """Which kwarg did not bind, and a sentence naming it: the context's own name, an
    unknown or a missing argument, or (a function that takes no context) what inspect says."""
    first, *parameters = signature.parameters.values() or [None]
    if first is not None and first.kind is not first.VAR_POSITIONAL and first.name in kwargs:
        return first.name, (
            f"assistant {name!r} takes its RunContext as {first.name!r}: no kwarg may use that name"
        )
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    unknown = [key for key in kwargs if key not in {p.name for p in named}]
    if unknown and not takes_any:
        takes = ", ".join(p.name for p in named if p.name not in refused) or "no kwargs"
        return unknown[0], (
            f"assistant {name!r} got an unexpected keyword argument {validation.shown(unknown[0])} "
            f"(it takes: {takes})"
        )
    missing = [p.name for p in named if p.default is p.empty and p.name not in kwargs]
    if missing:
        return missing[0], f"assistant {name!r} is missing the required argument {missing[0]!r}"
    return None, f"assistant {name!r} cannot be called as (context, **kwargs): {error}"


def _say_foreign(
    runtime: Runtime, run_id: str, published_by: str, delivery_info: dict | None
) -> None:
    """A run another deployment published (its database, not this worker's, holds it) came
    to this worker: queues are named from the deployment, so only a queue given by hand
    (-Q) can bring it. Said at ERROR; the message is dropped here, and the run's own
    deployment publishes it again (its relay, after Settings.republish_after)."""
    queue = (delivery_info or {}).get("routing_key") or "?"
    logger.error(
        "run %s was published by deployment %s, but this worker's database is deployment "
        "%s's: two deployments share broker queue %s (a stale worker, a copied .env, a -Q "
        "given by hand?); this worker leaves the run to its own deployment",
        run_id,
        published_by,
        runtime.deployment_id,
        queue,
        extra={"run_id": run_id, "action": "foreign_run"},
    )


def description_of(task: Any) -> str:
    """An assistant's description as listings show it: the first paragraph of its docstring
    (a graph's: given to langgraph_assistant()), on one line, never cut mid-sentence."""
    doc = inspect.cleandoc(getattr(task, "__doc__", None) or "")
    return " ".join(doc.split("\n\n", 1)[0].split())


def assistant(
    app: Celery, name: str | None = None, **task_options: Any
) -> Callable[[Callable[..., Any]], RunTask]:
    """Register a function as an assistant: a Celery task named `name` taking a RunContext.

    Registered on `app` alone (Celery's default, shared=True, would add it to every app the
    process creates later, and the first callable registered under a name would win)."""
    task_options.setdefault("shared", False)

    def register(function: Callable[..., Any]) -> RunTask:
        task_name = validation.assistant_name(name or function.__name__)
        return app.task(base=RunTask, name=task_name, **task_options)(function)

    return register


def _plain_id(thread_id: str, checkpoint_id: str | None) -> int | None:
    """A plain checkpoint's id as the table keeps it (a number); CheckpointNotFoundError for
    an id no plain checkpoint can have."""
    if checkpoint_id is None:
        return None
    if not (checkpoint_id.isascii() and checkpoint_id.isdigit() and len(checkpoint_id) < 19):
        raise CheckpointNotFoundError(f"thread {thread_id} has no checkpoint {checkpoint_id}")
    return int(checkpoint_id)

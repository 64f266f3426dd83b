"""The commands that change runs, `submit` and `cancel`, and what they share with the views:
run ids given as a prefix, --kwargs from a file or stdin, and what a down broker means."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from runqueue import validation
from runqueue.cli.commands import CliError, CliState, EnumChoice, main
from runqueue.errors import BrokerUnavailableError, InvalidPayloadError, UnknownAssistantError
from runqueue.records import AbortAction, MultitaskStrategy, RunRecord, RunStatus

if TYPE_CHECKING:
    from runqueue.registry import SyncRunManager

# Loggers that warn when the broker is down (a publish, a revoke, a Flower event).
BROKER_LOGGERS = ("runqueue.celery.dispatch", "runqueue.celery.task_events")
EXIT_RUN_FAILED = 3  # submit --wait: the run ended, not in success
EXIT_STILL_RUNNING = 4  # submit --wait: the run had not ended within --timeout
# submit's options that name one run, and so do not apply with --from (one run per line)
NOT_WITH_FROM = {
    "thread_id": "--thread",
    "kwargs_json": "--kwargs",
    "wait": "--wait",
    "timeout": "--timeout",
    "webhook": "--webhook",
    "after": "--after",
}


@contextlib.contextmanager
def registry_warnings() -> Iterator[list[str]]:
    """The registry's warnings (no live worker serves the assistant) as text, not log lines:
    a command says them once its own outcome is known (nothing on top of an error)."""
    caught: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    registry_logger = logging.getLogger("runqueue.registry")
    handler, propagate = Catch(logging.WARNING), registry_logger.propagate
    registry_logger.addHandler(handler)
    registry_logger.propagate = False
    try:
        yield caught
    finally:
        registry_logger.removeHandler(handler)
        registry_logger.propagate = propagate


def quiet_dispatch() -> None:
    """A command that says itself what a down broker means: no log warning on top. For this
    command only: the loggers get their levels back when it ends, so a process that runs
    commands in-process (a test, an embedding app) keeps the publish warnings afterwards."""
    ctx = click.get_current_context()
    for name in BROKER_LOGGERS:
        broker_logger = logging.getLogger(name)
        ctx.call_on_close(functools.partial(broker_logger.setLevel, broker_logger.level))
        broker_logger.setLevel(logging.ERROR)


def say_notes(warnings: list[str], problem: str | None, kept: str) -> None:
    """The notes after a submit: the registry's warnings, then what a down broker means for
    what was created (`kept`: "run X is kept (pending) and is", "the runs are kept ... and are")."""
    for warning in warnings:
        click.echo(f"note: {warning}", err=True)
    if problem:
        click.echo(
            f"note: {problem}; {kept} published when the broker is back (a worker's relay)",
            err=True,
        )


def broker_problem(app) -> str | None:  # noqa: ANN001
    """Why the broker cannot be used now (None: it answers)."""
    from runqueue.celery.dispatch import check_broker

    try:
        check_broker(app)
    except BrokerUnavailableError as exc:
        return str(exc)
    return None


def read_kwargs(value: str) -> dict[str, Any]:
    """--kwargs: JSON text, `@FILE` (a JSON file) or `-` (JSON on stdin)."""
    source = "--kwargs"
    if value == "-":
        value, source = click.get_text_stream("stdin").read(), "--kwargs from stdin"
    elif value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            value = path.read_text()
        except OSError as exc:
            raise InvalidPayloadError(
                f"cannot read the --kwargs file {path}: {exc.strerror}"
            ) from None
        source = f"--kwargs file {path}"
    kwargs = validation.parse_json(value, source)
    if not isinstance(kwargs, dict):
        raise InvalidPayloadError(f"{source} must be a JSON object, got {type(kwargs).__name__}")
    return kwargs


def resolve_run(queries, value: str) -> RunRecord:  # noqa: ANN001
    """The run a full id, or a unique prefix of one, names: RunNotFoundError if none,
    AmbiguousRunIdError if the prefix names several."""
    from runqueue.errors import AmbiguousRunIdError, RunNotFoundError

    value = validation.run_id_or_prefix(value)
    if not validation.is_run_id(value):
        matches = queries.run_ids_with_prefix(value, limit=3)
        if not matches:
            raise RunNotFoundError(f"no run id starts with {value}")
        if len(matches) > 1:
            more = " and more" if len(matches) > 2 else ""
            raise AmbiguousRunIdError(
                f"run id prefix {value} is ambiguous: it matches {matches[0]}, {matches[1]}"
                f"{more}; give more characters"
            )
        value = matches[0]
    run = queries.get(value)
    if run is None:
        raise RunNotFoundError(f"no run {value}")
    return run


@main.command()
@click.argument("assistant", required=False)
@click.option("--thread", "thread_id", help="Thread id.")
@click.option(
    "--strategy",
    type=EnumChoice(MultitaskStrategy, validation.strategy),
    default=MultitaskStrategy.reject.value,
    show_default=True,
    help="What to do when the thread already has a run in flight.",
)
@click.option(
    "--kwargs",
    "kwargs_json",
    default="{}",
    show_default=True,
    help="Keyword arguments: a JSON object, @FILE (read from a file) or - (read from stdin).",
)
@click.option(
    "--after",
    type=click.FloatRange(min=0),
    help="Delay: the run starts no earlier than SECONDS from now (pending until then).",
    metavar="SECONDS",
)
@click.option("--wait", is_flag=True, help="Wait for the final status.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@click.option(
    "--from",
    "from_file",
    type=click.File("rb"),
    help="Many runs from a JSON Lines file (- for stdin), instead of --thread and --kwargs.",
)
@click.option(
    "--webhook",
    metavar="URL",
    help="POST the run to URL once it is final (signed; docs/operations.md, Webhooks).",
)
@click.pass_context
def submit(
    ctx: click.Context,
    assistant: str | None,
    thread_id: str | None,
    strategy: MultitaskStrategy,
    kwargs_json: str,
    after: float | None,
    wait: bool,
    timeout: float,
    from_file: IO[bytes] | None,
    webhook: str | None,
) -> None:
    """Create a run of ASSISTANT, or many (--from).

    One run on a thread (--thread): applies the thread's multitask strategy and prints the
    run as JSON. With the broker down the run is still kept, as the library keeps it: the
    relay of any worker publishes it once the broker is back (a note on stderr says so;
    exit 0). With --wait: exit 3 if the run ended but not in success, 4 if it had not ended
    within --timeout (it goes on). With --after SECONDS the run is delayed: kept pending
    with its due time (`due_at` in the JSON), published when due.

    With --from FILE: one run per line of FILE, a JSON object of RunRequest's fields (thread_id
    required; assistant_id, kwargs, metadata, multitask_strategy, on_disconnect,
    follow_up_to_run_id, user_id, if_not_exists, own_thread, webhook, after). ASSISTANT and
    --strategy fill in a line that gives none; blank lines are skipped. Every line is checked
    before anything is written: a file with any bad line submits nothing (each is reported as
    `line N: reason`, exit 1). Then the runs are created 1,000 per transaction, each thread's
    strategy applied in file order, and published in pipelined rounds; stdout gets one JSON line
    per request (its run, or `refused` and why), stderr progress and a summary. A run its
    thread's strategy refused is not written (exit 1, naming its line); the others are."""
    state: CliState = ctx.obj
    if from_file is not None:
        given = [option for name, option in NOT_WITH_FROM.items() if was_given(ctx, name)]
        if given:
            raise click.UsageError(f"{given[0]} does not apply with --from (one run per line)")
        submit_from_file(state, from_file, assistant, strategy)
        return
    if assistant is None:
        # Optional only with --from: said as a required argument is, not as "[ASSISTANT]".
        raise click.MissingParameter(
            ctx=ctx, param=parameter(ctx, "assistant"), param_hint="'ASSISTANT'"
        )
    if thread_id is None:
        raise click.MissingParameter(ctx=ctx, param=parameter(ctx, "thread_id"))
    from runqueue.store import require_database

    kwargs = read_kwargs(kwargs_json)
    validation.thread_id(thread_id)
    require_database(state.settings.database_url)  # before the app makes its broker folders
    manager = state.manager()
    quiet_dispatch()
    problem = broker_problem(manager.app)
    with registry_warnings() as warnings, naming_the_app(state):  # notes once the run exists
        run = manager.create_or_reject(
            thread_id,
            assistant,
            kwargs=kwargs,
            multitask_strategy=strategy,
            webhook=webhook,
            after=after,
        )
    say_notes(warnings, problem, f"run {run.run_id} is kept ({run.status.value}) and is")
    print_submitted(manager, run, wait, timeout)


def print_submitted(manager: SyncRunManager, run: RunRecord, wait: bool, timeout: float) -> None:
    """The run as JSON (joined first with --wait); exit 4 if it had not ended in time, 3 if it
    ended but not in success."""
    timed_out = False
    if wait:
        try:
            run = manager.join(run.run_id, timeout=timeout)
        except TimeoutError as exc:
            timed_out, message = True, str(exc)
            run = manager.get(run.run_id) or run
    click.echo(
        json.dumps(
            {
                "run_id": run.run_id,
                "thread_id": run.thread_id,
                "status": run.status.value,
                "result": run.result,
                "error": run.error,
            }
            | ({"due_at": run.due_at.isoformat()} if run.due_at is not None else {})
        )
    )
    if timed_out:
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_STILL_RUNNING)
    if wait and run.status is not RunStatus.success:
        sys.exit(EXIT_RUN_FAILED)


def already_ended(run: RunRecord) -> str:
    return f"run {run.run_id} already ended ({run.status.value}): nothing to cancel"


@contextlib.contextmanager
def naming_the_app(state: CliState) -> Iterator[None]:
    """An unknown assistant may be a known one of another app: say how the app is chosen."""
    try:
        yield
    except UnknownAssistantError as exc:
        raise UnknownAssistantError(
            f"{exc}; the assistants come from --app or RUNQUEUE_APP, or --config or "
            f"RUNQUEUE_CONFIG (now {state.settings.assistants_source})"
        ) from None


def parameter(ctx: click.Context, name: str) -> click.Parameter:
    return next(param for param in ctx.command.params if param.name == name)


def was_given(ctx: click.Context, name: str) -> bool:
    """True if the parameter was on the command line (or its environment), not defaulted."""
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def submit_from_file(
    state: CliState, source: IO[bytes], assistant: str | None, strategy: MultitaskStrategy
) -> None:
    """submit --from: read and check every line, then create the runs (bulk_submit.py)."""
    from runqueue.cli.bulk_submit import read_requests, submit_from, summarize
    from runqueue.store import require_database

    lines, bad = read_requests(source, assistant, strategy)
    require_database(state.settings.database_url)  # before the app makes its broker folders
    manager = state.manager()
    quiet_dispatch()
    problem = broker_problem(manager.app)
    name = "stdin" if source.name in ("-", "<stdin>") else source.name
    with registry_warnings() as warnings:  # said once the runs exist, as notes
        submitted = submit_from(manager, lines, bad, name)
    say_notes(warnings, problem, "the runs are kept (pending) and are")
    summarize(submitted, name)


@main.command()
@click.argument("run_id")
@click.option(
    "--action",
    type=EnumChoice(AbortAction, validation.abort_action),
    default=AbortAction.interrupt.value,
    show_default=True,
    help="interrupt (keep its checkpoints) or rollback (delete them).",
)
@click.pass_obj
def cancel(state: CliState, run_id: str, action: AbortAction) -> None:
    """Cancel a pending or running run.

    RUN_ID: a full run id, or a unique prefix of one. A pending run is interrupted at
    once. A running run's cancel is recorded in the database: its worker is told through
    the broker, and reads it at its next heartbeat anyway, so a cancel works with the
    broker down too. A run that already ended is left as it is: one line says so, exit 0
    (the run is not executing, which is what a cancel asks for; an unknown id is exit 1)."""
    run = resolve_run(state.queries(), run_id)  # an unknown id: no app, nothing created
    if run.is_final:
        click.echo(already_ended(run))
        return
    manager = state.manager()
    quiet_dispatch()
    problem = broker_problem(manager.app) if run.status is RunStatus.running else None
    if not manager.cancel(run.run_id, action=action):  # it ended since it was read
        current = manager.get(run.run_id)
        if current is None:
            raise CliError(f"no run {run.run_id}")
        click.echo(already_ended(current))
        return
    current = manager.get(run.run_id)
    if run.status is RunStatus.pending and current is not None and current.is_final:
        click.echo(f"run {run.run_id} {current.status.value} before it started ({action.value})")
        return
    click.echo(f"cancel of run {run.run_id} recorded ({action.value}); its worker stops it")
    if problem:
        every = state.settings.heartbeat_interval
        click.echo(
            f"note: {problem}; the worker reads the cancel from the database at its next "
            f"heartbeat (every {every:g} s) and stops the run",
            err=True,
        )

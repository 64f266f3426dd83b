"""The read-only commands: runs, show, threads and assistants, as tables or --json.

runs, show and threads read the database without loading the app, so that they create no
file, folder or broker queue; a database that is not there says to run `runqueue migrate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
from rich.markup import escape

from runqueue import validation
from runqueue.cli import assistant_commands
from runqueue.cli.commands import CliState, EnumChoice, main
from runqueue.cli.run_commands import resolve_run
from runqueue.errors import RunQueueError, plural
from runqueue.records import AssistantRecord, RunRecord, RunStatus
from runqueue.worker.task import description_of

SHORT_ID_MIN = 8  # characters of a shortened run id, at least
JSON_HELP = "Print JSON instead of a table (full ids, ISO 8601 times, status values)."
LIMIT = click.IntRange(0, validation.MAX_PAGE)
# The columns a narrow terminal drops, least needed first: each try drops one more.
NARROW_RUNS_DROP = ((), ("duration",), ("duration", "strategy"),
                    ("duration", "strategy", "assistant"))  # fmt: skip
NARROW_THREADS = (
    dict(compact=False),
    dict(compact=True),
    dict(compact=True, hide=("user",)),
    dict(compact=True, hide=("user", "updated (UTC)")),
)


def shortest_unique_length(shown: Iterable[str], others: Iterable[str] = ()) -> int:
    """The fewest leading characters (SHORT_ID_MIN at least) that tell each id in `shown`
    apart from every other id in `shown` and `others`."""
    shown = set(shown)
    everything = sorted(shown | set(others))
    length = SHORT_ID_MIN
    for before, after in zip(everything, everything[1:], strict=False):
        if before in shown or after in shown:
            common = next(
                (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
                min(len(before), len(after)),
            )
            length = max(length, common + 1)
    return length


def short_ids(queries, run_ids: list[str]) -> dict[str, str]:  # noqa: ANN001
    """Each run id cut to a prefix that no other run in the database shares (one query for
    the runs that share the listed ids' shortest listed-unique prefixes)."""
    if not run_ids:
        return {}
    length = shortest_unique_length(run_ids)
    others = queries.run_ids_sharing_prefixes({run_id[:length] for run_id in run_ids}, length)
    length = shortest_unique_length(run_ids, others)
    return {run_id: run_id[:length] for run_id in run_ids}


@main.command()
@click.option("--thread", "thread_id", default=None, help="Only this thread's runs.")
@click.option(
    "--status",
    type=EnumChoice(RunStatus, validation.status),
    default=None,
    help="Only runs in this status.",
)
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_obj
def runs(
    state: CliState, thread_id: str | None, status: RunStatus | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first. In a terminal too narrow for whole run ids, each id is cut
    to a unique prefix, which `show` and `cancel` accept."""
    from runqueue.cli.render import console, first_that_fits, fits, note, print_json, runs_table

    queries = state.queries()
    records = queries.list_runs(
        thread_id=validation.thread_id(thread_id) if thread_id is not None else None,
        status=status,
        limit=limit,
    )
    if as_json:
        print_json(records)
        return
    out = console()
    title = plural(len(records), "run")
    table = runs_table(records, title=title)
    if fits(out, table):
        out.print(table)
        _more_may_exist(out, records, limit)
        return
    # Narrower: run ids cut to unique prefixes, then the columns least needed dropped.
    ids = short_ids(queries, [run.run_id for run in records])
    out.print(
        first_that_fits(
            out,
            (
                lambda hide=hide, **width: runs_table(
                    records, title=title, ids=ids, hide=hide, **width
                )
                for hide in NARROW_RUNS_DROP
            ),
        )
    )
    note(
        out, "run ids cut to unique prefixes (show and cancel take them); --json prints them whole"
    )
    _more_may_exist(out, records, limit)


def _more_may_exist(out: Any, records: list[RunRecord], limit: int) -> None:
    """Under a page that came back full: say that it is a page."""
    from runqueue.cli.render import note

    if limit and len(records) == limit:
        note(out, f"the latest {plural(limit, 'run')}; --limit shows more")


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_obj
def show(state: CliState, run_id: str, as_json: bool) -> None:
    """Show a run and its transition history.

    RUN_ID: a full run id, or a unique prefix of one (as `runs` shows in a narrow
    terminal). A pending run also says why it has not started."""
    from runqueue.cli.render import (
        console,
        events_table,
        json_value,
        print_json,
        run_table,
        webhook_table,
    )
    from runqueue.store import WebhookDeliveries

    queries = state.queries()
    run = resolve_run(queries, run_id)
    events = queries.events(run.run_id)
    reason = pending_reason(state, run)
    fire = queries.store.fire_of_run(run.run_id)  # the cron tick that fired it, if any
    delivery = WebhookDeliveries(queries.store).get(run.run_id) if run.webhook else None
    if as_json:
        print_json(
            {**json_value(run), "pending_reason": reason, "cron": fire, "events": events}
            | ({"webhook_delivery": json_value(delivery)} if run.webhook else {})
        )
        return
    out = console()
    out.print(run_table(run))
    if fire is not None:
        out.print(f"fired by cron {fire.cron_id} at its tick {fire.tick.isoformat()}")
    if reason:
        out.print(f"pending: {escape(reason)}")
    out.print(events_table(events))
    if delivery is not None:
        out.print(webhook_table(delivery))
    elif run.webhook:
        out.print(f"webhook: {escape(run.webhook)} (sent once the run is final)")


def pending_reason(state: CliState, run: RunRecord) -> str | None:
    """Why a pending run has not started, from the registry's why_pending() (the fleet's
    view: the thread's holder, the workers serving its assistant); None otherwise."""
    if run.status is not RunStatus.pending:
        return None
    why_pending = getattr(state.manager(), "why_pending", None)
    if why_pending is None:
        return None
    try:
        return why_pending(run.run_id)
    except RunQueueError as exc:  # an older schema without the fleet's table: say why not
        return f"unknown ({exc})"


@main.command()
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_obj
def threads(state: CliState, limit: int, as_json: bool) -> None:
    """List threads and their run counts by status.

    Most recently updated first."""
    from runqueue.cli.render import console, first_that_fits, print_json, thread_json, threads_table

    listed = state.queries().threads(limit)
    if as_json:
        print_json([thread_json(thread, counts) for thread, counts in listed])
        return
    out = console()
    title = plural(len(listed), "thread")
    layouts = (
        lambda how=how, **width: threads_table(listed, title=title, **how, **width)
        for how in NARROW_THREADS
    )
    out.print(first_that_fits(out, layouts))


def assistant_entries(app) -> list[dict[str, Any]]:  # noqa: ANN001
    """The app's registered assistants: name, kind (task or graph), options, description."""
    from runqueue.registry import SyncRunManager

    entries = []
    for name in SyncRunManager(app).assistants():
        task = app.tasks[name]
        options: dict[str, Any] = {}
        for option in ("time_limit", "soft_time_limit"):
            if getattr(task, option, None) is not None:
                options[option] = getattr(task, option)
        retry = getattr(task, "run_retry", None)
        if retry is not None:
            options["max_attempts"] = retry.max_attempts
        entries.append(
            dict(
                name=name,
                kind="graph" if task.takes_run_fields else "task",
                options=options,
                description=description_of(task),
            )
        )
    return entries


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.pass_obj
def assistants(state: CliState, as_json: bool) -> None:
    """List the app's registered assistants, then the stored ones with their versions.

    Name, kind (task or graph), options and description: the names `submit` takes. Then the
    assistants made with `runqueue assistant create` / POST /assistants, each at its active
    version (`runqueue assistant versions ID` lists them all). --json: the registered ones."""
    from runqueue.cli.render import assistants_table, console, print_json

    entries = assistant_entries(state.app())
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo(f"{state.settings.assistants_source} registers no assistant")
        return
    console().print(assistants_table(entries))
    stored = stored_assistants(state)
    if stored:
        console().print(assistant_commands.table(stored, "stored assistants, active version"))


def stored_assistants(state: CliState) -> list[AssistantRecord]:
    """The stored assistants (not the defaults), or none when the database cannot say: the
    registered ones above need no database."""
    try:
        found = state.manager().search_assistants(limit=1000)
    except RunQueueError:
        return []
    return [record for record in found if not record.default]

"""`runqueue crons`: list crons with their next and latest fires; create, enable, disable,
delete one. Thin: each parses, calls the registry (the listing reads the store without
loading the app) and prints."""

from __future__ import annotations

import json
from typing import Any

import click

from runqueue.cli.commands import CliState, EnumChoice, main
from runqueue.errors import plural
from runqueue.records import CronCompletion, CronFire, CronRecord, MultitaskStrategy
from runqueue.validation import strategy as parse_strategy

JSON_HELP = "Print JSON instead of a table (full ids, ISO 8601 times)."


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise click.BadParameter("a JSON object, e.g. '{\"n\": 1}'")
    return decoded


@main.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def crons(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List crons: schedule, next fire time (UTC) and latest fire with its run.

    Subcommands create, enable, disable and delete one; `runqueue show RUN_ID` names the
    cron that fired a run."""
    if ctx.invoked_subcommand is not None:
        return
    state: CliState = ctx.obj
    store = state.queries().store
    listed = store.search_crons(user_id=None, limit=limit)
    latest = {cron.cron_id: next(iter(store.cron_fires(cron.cron_id, 1)), None) for cron in listed}
    if as_json:
        from runqueue.cli.render import print_json

        print_json([{"cron": cron, "latest_fire": latest[cron.cron_id]} for cron in listed])
        return
    _print_table(listed, latest, limit)


def _print_table(listed: list[CronRecord], latest: dict[str, CronFire | None], limit: int) -> None:
    from rich.table import Table

    from runqueue.cli.render import console, note, short_time

    table = Table(title="crons")
    # The id whole on one line, whatever the width: it is what the other commands take.
    table.add_column(
        "cron", no_wrap=True, min_width=max((len(c.cron_id) for c in listed), default=4)
    )
    for column in ("assistant", "thread", "schedule", "enabled", "next fire (UTC)", "latest fire"):
        table.add_column(column, overflow="fold")
    for cron in listed:
        fire = latest[cron.cron_id]
        thread = cron.thread_id or f"new each fire ({cron.on_run_completed.value})"
        schedule = cron.schedule + (f" ({cron.timezone})" if cron.timezone else "")
        nxt = short_time(cron.next_run_date) if cron.next_run_date else "none (ended)"
        last = "never"
        if fire is not None:
            last = f"{short_time(fire.tick)} -> {fire.run_id or fire.outcome}"
        table.add_row(cron.cron_id, cron.assistant_id, thread, schedule,
                      "yes" if cron.enabled else "no", nxt, last)  # fmt: skip
    out = console()
    out.print(table)
    if len(listed) == limit:
        note(out, f"the latest {plural(limit, 'cron')}; --limit shows more")


@crons.command("create")
@click.argument("assistant")
@click.argument("schedule")
@click.option("--thread", "thread_id", help="Fire on this thread (else a new one each time).")
@click.option("--kwargs", callback=_json_object, help="The runs' kwargs, a JSON object.")
@click.option("--metadata", callback=_json_object, help="The runs' metadata, a JSON object.")
@click.option("--timezone", help="IANA timezone of the schedule (default UTC).")
@click.option("--end-time", help="No fire after this time (ISO 8601; UTC if no offset).")
@click.option(
    "--strategy",
    "multitask_strategy",
    type=EnumChoice(MultitaskStrategy, parse_strategy),
    default=MultitaskStrategy.enqueue.value,
    show_default=True,
    help="What a fire does on a busy thread.",
)
@click.option(
    "--on-run-completed",
    type=EnumChoice(CronCompletion, CronCompletion),
    default=None,
    help="Stateless crons: delete (default) or keep each fire's thread once its run ended.",
)
@click.option("--disabled", is_flag=True, help="Create it disabled (enable it later).")
@click.pass_obj
def create(state: CliState, assistant: str, schedule: str, **options: Any) -> None:
    """Create a cron: a run of ASSISTANT at every tick of SCHEDULE.

    SCHEDULE: cron syntax, 'minute hour day month weekday' ('*/5 * * * *'); a sixth field
    is seconds ('* * * * * */10'). Prints the cron's id and its first fire time."""
    options["enabled"] = not options.pop("disabled")
    cron = state.manager().create_cron(assistant, schedule=schedule, **options)
    first = cron.next_run_date.isoformat() if cron.next_run_date else "never (end_time passed)"
    click.echo(f"{cron.cron_id} first fire {first}")


def _set_enabled(state: CliState, cron_id: str, enabled: bool) -> None:
    cron = state.manager().update_cron(cron_id, enabled=enabled)
    nxt = cron.next_run_date.isoformat() if cron.next_run_date and enabled else "none"
    click.echo(f"{cron.cron_id} {'enabled' if enabled else 'disabled'}; next fire {nxt}")


@crons.command("enable")
@click.argument("cron_id")
@click.pass_obj
def enable(state: CliState, cron_id: str) -> None:
    """Enable a cron: it fires again from its next tick."""
    _set_enabled(state, cron_id, True)


@crons.command("disable")
@click.argument("cron_id")
@click.pass_obj
def disable(state: CliState, cron_id: str) -> None:
    """Disable a cron: no fire until it is enabled again."""
    _set_enabled(state, cron_id, False)


@crons.command("delete")
@click.argument("cron_id")
@click.pass_obj
def delete(state: CliState, cron_id: str) -> None:
    """Delete a cron (the runs it fired stay)."""
    state.manager().delete_cron(cron_id)
    click.echo(f"{cron_id} deleted")

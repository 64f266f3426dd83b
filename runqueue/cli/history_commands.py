"""`runqueue history THREAD`: a thread's checkpoints newest first, each with its parent, as
a table or --json (the registry's history(), as `GET /threads/{id}/history` answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from runqueue.cli.commands import CliError, CliState, main
from runqueue.errors import plural
from runqueue.records import ThreadState

if TYPE_CHECKING:
    from rich.table import Table

HISTORY_LIMIT = click.IntRange(1, 1000)  # the registry's bound on one history read
# Dropped in this order in a narrow terminal: the parent is the next row's checkpoint.
NARROW_HISTORY_DROP = ((), ("parent",), ("parent", "run"), ("parent", "run", "created (UTC)"))


def history_table(
    thread_id: str,
    states: list[ThreadState],
    hide: tuple[str, ...] = (),
    id_width: int | None = None,
) -> Table:
    """One row per checkpoint, newest first: its id (never split over lines), its parent,
    step and source (`input`, `loop`, `update`), the nodes that run next, the run that
    wrote it (none for an update), when it was written."""
    from rich.markup import escape
    from rich.table import Table

    from runqueue.cli.render import short_time

    table = Table(title=f"thread {escape(thread_id)}: {plural(len(states), 'checkpoint')}")
    table.add_column("checkpoint", no_wrap=True, overflow="ellipsis", max_width=id_width)
    columns = ("parent", "step", "source", "next", "run", "created (UTC)")
    shown = [column for column in columns if column not in hide]
    for column in shown:
        table.add_column(column, overflow="fold")
    for state in states:
        metadata = state.metadata or {}
        step = metadata.get("step")
        cells = {
            "parent": escape(state.parent_checkpoint_id or "-"),
            "step": "-" if step is None else escape(str(step)),
            "source": escape(str(metadata.get("source") or "-")),
            "run": escape(str(metadata.get("run_id") or "-")),
            "next": escape(", ".join(state.next) or "-"),
            "created (UTC)": short_time(state.created_at) if state.created_at else "-",
        }
        table.add_row(escape(state.checkpoint_id or "-"), *(cells[column] for column in shown))
    return table


@main.command()
@click.argument("thread_id")
@click.option(
    "--limit", type=HISTORY_LIMIT, default=10, show_default=True, help="At most this many."
)
@click.option("--before", default=None, help="Only checkpoints older than this checkpoint id.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the states.")
@click.pass_obj
def history(state: CliState, thread_id: str, limit: int, before: str | None, as_json: bool) -> None:
    """List a thread's checkpoints, newest first.

    A graph's: each step a run wrote and each state update, with the checkpoint it was
    written after (its parent). A plain assistant's: its runs' checkpoints."""
    from runqueue.cli.render import console, first_that_fits, note, print_json

    manager = state.manager()
    if manager.get_thread(thread_id) is None:
        raise CliError(f"no thread {thread_id}")
    from runqueue.cli.run_commands import naming_the_app

    with naming_the_app(state):  # a project's graph: the app comes from --config
        states = manager.history(thread_id, limit=limit, before=before)
    if as_json:
        print_json(states)
        return
    out = console()
    layouts = (
        lambda hide=hide, **width: history_table(thread_id, states, hide=hide, **width)
        for hide in NARROW_HISTORY_DROP
    )
    out.print(first_that_fits(out, layouts))
    if len(states) == limit:
        older = f" older than {before}" if before else ""
        note(out, f"the latest {plural(limit, 'checkpoint')}{older}; --limit shows more")

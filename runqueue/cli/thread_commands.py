"""`runqueue prune-threads`: threads deleted, or cut to their latest checkpoint, by hand (the
HTTP API's POST /threads/prune; a thread's ttl does the same on its own)."""

from __future__ import annotations

import click

from runqueue.cli.commands import CliState, EnumChoice, main
from runqueue.errors import plural
from runqueue.records import PruneStrategy
from runqueue.registry.threads import prune_strategy


@main.command("prune-threads")
@click.argument("thread_ids", nargs=-1, required=True)
@click.option(
    "--strategy",
    type=EnumChoice(PruneStrategy, prune_strategy),
    default=PruneStrategy.delete.value,
    show_default=True,
    help="delete (the thread, its runs, history, state and streams) or keep_latest (the "
    "thread and its runs stay, with its latest checkpoint alone).",
)
@click.pass_obj
def prune_threads(state: CliState, thread_ids: tuple[str, ...], strategy: PruneStrategy) -> None:
    """Prune threads: delete them, or keep each with its latest checkpoint only.

    THREAD_IDS: one or more thread ids. A thread with a run in flight is left as it is
    (cancel the run first), as is an id with no thread: the line printed counts both."""
    named = len(set(thread_ids))
    pruned = state.manager().prune_threads(thread_ids, strategy=strategy)
    left = (
        f"; {named - pruned} left out (a run in flight, or no such thread)"
        if pruned < named
        else ""
    )
    click.echo(f"pruned {plural(pruned, 'thread')} of {named} ({strategy.value}){left}")

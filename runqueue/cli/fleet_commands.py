"""`runqueue workers` (the live fleet) and `runqueue health` (a container's health check)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import click

from runqueue.cli.commands import CliError, CliState, main
from runqueue.errors import plural
from runqueue.records import WorkerRecord

if TYPE_CHECKING:
    from rich.table import Table


# Dropped in this order in a narrow terminal (the node name says host and, by default, pid).
NARROW_WORKERS_DROP = (
    (),
    ("host", "pid"),
    ("host", "pid", "started"),
    ("host", "pid", "started", "pool"),
)


def workers_table(
    workers: list[WorkerRecord], hide: tuple[str, ...] = (), id_width: int | None = None
) -> Table:
    """One row per live worker: what it serves, how, and when it last said it lives. The
    node name is never split over lines (cut with `…` to `id_width` at most)."""
    from rich.markup import escape
    from rich.table import Table

    from runqueue.cli.render import clock

    table = Table(title=plural(len(workers), "live worker"))
    table.add_column("worker", no_wrap=True, overflow="ellipsis", max_width=id_width)
    columns = ("pool", "assistants", "host", "pid", "started", "heartbeat")
    shown = [column for column in columns if column not in hide]
    for column in shown:
        table.add_column(column, overflow="fold", no_wrap=column != "assistants")
    for worker in workers:
        cells = {
            "pool": f"{worker.pool} {worker.concurrency}",
            "assistants": escape(", ".join(worker.assistants) or "-"),
            "host": escape(worker.host),
            "pid": str(worker.pid),
            "started": clock(worker.started_at),
            "heartbeat": clock(worker.heartbeat_at),
        }
        table.add_row(escape(worker.name), *(cells[column] for column in shown))
    return table


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def workers(state: CliState, as_json: bool) -> None:
    """List the live workers: registered, not stopped, heartbeat younger than a lease."""
    from runqueue.cli.render import console, first_that_fits, json_value

    fleet = state.manager().workers()
    if as_json:
        click.echo(json.dumps(json_value(fleet)))
    elif not fleet:
        click.echo("no live workers (start one with: runqueue worker)")
    else:
        layouts = (
            lambda hide=hide, **width: workers_table(fleet, hide, **width)
            for hide in NARROW_WORKERS_DROP
        )
        console().print(first_that_fits(console(), layouts))


@main.command()
@click.option(
    "--worker",
    "node",
    default=None,
    help="Also ping this Celery node (name@host; %h is this host's name).",
)
@click.option(
    "--url",
    default=None,
    help="Only GET this http(s) URL; it must answer 200 (the API's /ok, Flower's /healthcheck).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds per check.",
)
@click.pass_obj
def health(state: CliState, node: str | None, url: str | None, timeout: float) -> None:
    """Check the database (reachable, migrated) and the broker, and with --worker that
    worker node too; with --url only that HTTP endpoint (a service's own health: Flower has
    no database). One line, exit 0 if all answer, 1 if one does not."""
    from celery.utils.nodenames import default_nodename, host_format

    if url is not None and not url.startswith(("http://", "https://")):
        raise click.BadParameter("an http:// or https:// URL", param_hint="'--url'")
    checked: list[str] = []
    if url is None or node is not None:
        from runqueue.celery.app import runtime_of
        from runqueue.worker.readiness import check_services

        app = state.app()
        check_services(app, runtime_of(app).settings, broker_timeout=timeout)
        checked = ["database", "broker"]
    if node is not None:
        node = default_nodename(host_format(node))
        replies = app.control.ping(destination=[node], timeout=timeout)
        if not any(node in reply for reply in replies or []):
            raise CliError(f"worker {node} did not answer a ping within {timeout:g}s")
        checked.append(f"worker {node}")
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None
        if status != 200:
            raise CliError(f"{url} answered {status}, not 200")
        checked.append(url)
    click.echo(f"ok: {', '.join(checked)}")

"""`runqueue assistant ...`: assistants with versions from the terminal (list, versions,
create, patch, latest, delete), through the registry as the HTTP API's routes are. With no
user: every stored assistant, as with RUNQUEUE_API_AUTH=off."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from runqueue.cli.commands import CliError, CliState, main
from runqueue.records import AssistantRecord


def _json_object(option: str, text: str | None) -> dict[str, Any] | None:
    """--config, --context, --metadata: JSON objects (a bad one is one line, exit 1)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"{option} must be a JSON object")
    return value


def table(records: list[AssistantRecord], title: str) -> Table:
    table = Table(title=title)
    for column in ("assistant", "graph", "name", "version", "updated (UTC)", "config"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            record.assistant_id,
            escape(record.graph_id),
            escape(record.name),
            str(record.version),
            f"{record.updated_at:%Y-%m-%d %H:%M:%S}",
            escape(json.dumps(record.config)),
        )
    return table


def _show(records: list[AssistantRecord], title: str, as_json: bool) -> None:
    from runqueue.cli.render import console, print_json

    if as_json:
        print_json(records)
    else:
        console().print(table(records, title))


FIELDS = [
    click.option("--name", help="The assistant's name."),
    click.option("--description", help="What it is for."),
    click.option("--config", "config_json", help='Its config, JSON: {"configurable": {...}}.'),
    click.option("--context", "context_json", help="Its context, JSON (or config.configurable)."),
    click.option("--metadata", "metadata_json", help="Its metadata, JSON."),
]


def with_fields(command: Any) -> Any:
    for option in reversed(FIELDS):
        command = option(command)
    return command


@main.group(name="assistant")
def assistant() -> None:
    """Assistants with versions: a graph with its config, context and metadata."""


@assistant.command(name="list")
@click.option("--graph", "graph_id", help="Only this graph's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
def list_assistants(state: CliState, graph_id: str | None, limit: int, as_json: bool) -> None:
    """The assistants (each graph's default and the stored ones), newest first, with the
    version each runs."""
    records = state.manager().search_assistants(graph_id=graph_id, limit=limit)
    _show(records, "assistants", as_json)


@assistant.command(name="versions")
@click.argument("assistant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
def versions(state: CliState, assistant_id: str, as_json: bool) -> None:
    """ASSISTANT_ID's versions, newest first (`latest` makes one of them active)."""
    manager = state.manager()
    active = manager.get_assistant(assistant_id).version
    records = manager.assistant_versions(assistant_id, limit=1000)
    _show(records, f"versions of {assistant_id} (active: {active})", as_json)


@assistant.command(name="create")
@click.argument("graph_id")
@click.option("--id", "assistant_id", help="Its id, a UUID (default: a new one).")
@with_fields
@click.pass_obj
def create(state: CliState, graph_id: str, assistant_id: str | None, **fields: Any) -> None:
    """A new assistant of GRAPH_ID, at version 1: printed as JSON."""
    from runqueue.cli.render import print_json

    record = state.manager().create_assistant(
        graph_id, assistant_id=assistant_id, **_fields(fields)
    )
    print_json(record)


@assistant.command(name="patch")
@click.argument("assistant_id")
@click.option("--graph", "graph_id", help="Run another graph.")
@with_fields
@click.pass_obj
def patch(state: CliState, assistant_id: str, graph_id: str | None, **fields: Any) -> None:
    """A new version of ASSISTANT_ID (the given fields over the active version's), made
    active: printed as JSON."""
    from runqueue.cli.render import print_json

    record = state.manager().patch_assistant(assistant_id, graph_id=graph_id, **_fields(fields))
    print_json(record)


@assistant.command(name="latest")
@click.argument("assistant_id")
@click.argument("version", type=click.IntRange(1))
@click.pass_obj
def latest(state: CliState, assistant_id: str, version: int) -> None:
    """Make VERSION of ASSISTANT_ID the active one (a rollback): printed as JSON."""
    from runqueue.cli.render import print_json

    print_json(state.manager().set_assistant_version(assistant_id, version))


@assistant.command(name="delete")
@click.argument("assistant_id")
@click.pass_obj
def delete(state: CliState, assistant_id: str) -> None:
    """Delete ASSISTANT_ID with its versions (its runs in flight finish on their config)."""
    state.manager().delete_assistant(assistant_id)
    click.echo(f"deleted assistant {assistant_id}")


def _fields(given: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": given["name"],
        "description": given["description"],
        "config": _json_object("--config", given["config_json"]),
        "context": _json_object("--context", given["context_json"]),
        "metadata": _json_object("--metadata", given["metadata_json"]),
    }

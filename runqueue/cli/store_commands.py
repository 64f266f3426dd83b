"""`runqueue store namespaces` and `runqueue store items`: what the Store (LangGraph's
long-term memory, docs/api.md "Store") holds, as one user sees it or, without --user, as it
is (every user's namespaces under ("users", USER))."""

from __future__ import annotations

import json

import click

from runqueue.cli.commands import CliState, main
from runqueue.cli.render import print_json


def _labels(dotted: str | None) -> list[str] | None:
    return None if not dotted else dotted.split(".")


@main.group("store")
def store() -> None:
    """The Store's namespaces and items (LangGraph's long-term memory)."""


@store.command("namespaces")
@click.option("--prefix", help="only namespaces under this one (labels joined by '.')")
@click.option("--user", help="as this user sees them (default: the store as it is)")
@click.option("--max-depth", type=int, help="cut each namespace to this many labels")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON array")
@click.pass_obj
def namespaces(
    state: CliState,
    prefix: str | None,
    user: str | None,
    max_depth: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the namespaces that hold items, one per line (labels joined by '.')."""
    from runqueue.registry.store_items import StoreItems

    found = StoreItems(state.app()).list_namespaces(
        prefix=_labels(prefix), max_depth=max_depth, limit=limit, user_id=user
    )
    if as_json:
        print_json([list(namespace) for namespace in found])
        return
    for namespace in found:
        click.echo(".".join(namespace))


@store.command("items")
@click.argument("namespace")
@click.option("--user", help="as this user sees them (default: the store as it is)")
@click.option("--limit", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON array of items")
@click.pass_obj
def items(state: CliState, namespace: str, user: str | None, limit: int, as_json: bool) -> None:
    """List the items under NAMESPACE (labels joined by '.'), newest first: one line each,
    namespace, key and value. Reading an item here does not refresh its ttl."""
    from runqueue.registry.store_items import StoreItems

    found = StoreItems(state.app()).search(
        _labels(namespace), limit=limit, refresh_ttl=False, user_id=user
    )
    if as_json:
        print_json([item.dict() for item in found])
        return
    for item in found:
        click.echo(f"{'.'.join(item.namespace)}  {item.key}  {json.dumps(item.value)}")

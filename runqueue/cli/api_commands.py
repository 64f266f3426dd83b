"""`runqueue serve` (the HTTP API under uvicorn) and `runqueue api-key` (its keys)."""

from __future__ import annotations

import json
import os

import click

from runqueue.cli.commands import CliError, CliState, main

DEFAULT_PORT = 8123  # where langgraph-sdk's get_client() looks by default


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, type=int, show_default=True)
@click.option(
    "--workers",
    default=1,
    type=click.IntRange(min=1),
    show_default=True,
    help="uvicorn worker processes.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_obj
def serve(state: CliState, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the HTTP API (the LangGraph runs API, for langgraph-sdk).

    API keys (header x-api-key) are required unless RUNQUEUE_API_AUTH=off, which is
    refused unless HOST is a loopback address."""
    import uvicorn

    from runqueue.api.server import server_options
    from runqueue.api.users import check_auth_setting

    settings = state.settings
    check_auth_setting(settings.api_auth, host)
    if settings.config:  # a bad project: one line here, not a traceback per API process
        from runqueue.langgraph.project import load_project

        load_project(settings.config)
    state.export()
    # One pooled connection per API thread, so that no call waits for, or churns, one.
    pool = max(settings.database_pool_size, settings.api_threads)
    os.environ["RUNQUEUE_DATABASE_POOL_SIZE"] = str(pool)
    uvicorn.run(
        "runqueue.api.server:api_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        **server_options(settings),
    )


@main.group(name="api-key")
def api_key() -> None:
    """Create, list and revoke HTTP API keys (only their hashes are stored)."""


def _keys(state: CliState):  # noqa: ANN202
    from runqueue.api.users import ApiKeys
    from runqueue.celery.app import runtime_of

    return ApiKeys(runtime_of(state.app()).store)


@api_key.command(name="create")
@click.argument("user")
@click.pass_obj
def create_key(state: CliState, user: str) -> None:
    """Create a key for USER. The key is printed once, alone on stdout (the rest on stderr),
    so that `KEY=$(runqueue api-key create USER)` captures the key only."""
    record, key = _keys(state).create(user)
    shown = f"created key {record.key_id} for user {record.user_id}; it is shown only now"
    click.echo(shown, err=True)
    click.echo(key)


@api_key.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
def list_keys(state: CliState, as_json: bool) -> None:
    """The keys: id, user, created, revoked."""
    records = _keys(state).list()
    if as_json:
        click.echo(
            json.dumps(
                [
                    dict(
                        key_id=r.key_id,
                        user_id=r.user_id,
                        created_at=r.created_at.isoformat(),
                        revoked_at=r.revoked_at.isoformat() if r.revoked_at else None,
                    )
                    for r in records
                ]
            )
        )
        return
    if not records:
        click.echo("no API keys (create one: runqueue api-key create USER)")
    for r in records:
        revoked = f"revoked {r.revoked_at:%Y-%m-%d %H:%M:%S}" if r.revoked_at else "active"
        click.echo(f"{r.key_id}  {r.user_id}  created {r.created_at:%Y-%m-%d %H:%M:%S}  {revoked}")


@api_key.command(name="revoke")
@click.argument("key_id")
@click.pass_obj
def revoke_key(state: CliState, key_id: str) -> None:
    """Revoke KEY_ID: every API process refuses it from the next request on."""
    if not _keys(state).revoke(key_id):
        raise CliError(f"no active key {key_id} (see runqueue api-key list)")
    click.echo(f"revoked key {key_id}")

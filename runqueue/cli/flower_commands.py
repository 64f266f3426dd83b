"""`runqueue flower`: Flower on the fleet's broker, with authentication, without the
database.

Flower can terminate any run and shows every run's thread, so it never starts open: it
takes its own credentials (FLOWER_BASIC_AUTH=user:password, or OAuth through FLOWER_AUTH and
FLOWER_AUTH_PROVIDER with FLOWER_OAUTH2_*), or `--no-auth` on a loopback address only.
FLOWER_UNAUTHENTICATED_API is removed: Flower's API always asks for the credentials."""

from __future__ import annotations

import os
import sys

import click

from runqueue.cli.commands import CliError, CliState, main
from runqueue.settings import ENV_PREFIX, Settings

DEFAULT_PORT = 5555
# The thread (args, "thread=ID") and why a run ended (exception) without opening a task.
TASK_COLUMNS = "name,uuid,state,args,received,started,runtime,worker,exception"
# Flower needs the broker; nothing of the database, whose credentials stay out of its reach.
FLOWER_SETTINGS = ("broker_url", "data_dir", "flower_payloads")
SECRET_WORDS = ("PASSWORD", "PASSWD", "DATABASE_URL", "DSN")
REMOVED_VARIABLES = ("FLOWER_UNAUTHENTICATED_API", "PGPASSFILE", "PGSERVICEFILE")


def flower_auth(environ: dict[str, str]) -> str | None:
    """How Flower will authenticate its users, from Flower's own variables; None if not."""
    if environ.get("FLOWER_BASIC_AUTH", "").strip():
        return "basic"
    if environ.get("FLOWER_AUTH", "").strip() and environ.get("FLOWER_AUTH_PROVIDER", "").strip():
        return "oauth"
    return None


def check_flower_auth(environ: dict[str, str], address: str, no_auth: bool) -> None:
    """CliError unless Flower will ask for credentials, or runs open on loopback by request."""
    from runqueue.api.users import is_loopback

    if no_auth:
        if not is_loopback(address):
            raise CliError(
                f"--no-auth is refused on {address}, which is not a loopback address "
                "(set FLOWER_BASIC_AUTH=user:password instead)"
            )
        return
    basic = environ.get("FLOWER_BASIC_AUTH", "").strip()
    if basic:
        for entry in basic.split(","):
            user, _, password = entry.partition(":")
            if not user.strip() or not password:
                raise CliError(
                    "FLOWER_BASIC_AUTH must be user:password pairs, comma-separated, each "
                    "with a user and a password (an empty one lets anyone in)"
                )
    if flower_auth(environ) is None:
        raise CliError(
            "Flower needs authentication: set FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH "
            "and FLOWER_AUTH_PROVIDER for OAuth), or pass --no-auth on a loopback address"
        )


def flower_environment(environ: dict[str, str], settings: Settings) -> dict[str, str]:
    """Flower's environment: this one without RUNQUEUE_* settings (the database URL among
    them), passwords, and the switch that opens Flower's API; plus the broker settings."""
    kept = {
        name: value
        for name, value in environ.items()
        if not name.startswith(ENV_PREFIX)
        and name not in REMOVED_VARIABLES
        and not (name.startswith("PG") and name.isupper())
        and not (
            any(word in name.upper() for word in SECRET_WORDS) and not name.startswith("FLOWER_")
        )
    }
    given = {ENV_PREFIX + name.upper(): str(getattr(settings, name)) for name in FLOWER_SETTINGS}
    return kept | given


def flower_command(settings: Settings, port: int, address: str) -> list[str]:
    """`celery -A runqueue.cli.flower_app flower ...` with this interpreter."""
    columns = TASK_COLUMNS + (",kwargs,result" if settings.flower_payloads == "on" else "")
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "runqueue.cli.flower_app",
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--tasks_columns={columns}",
    ]


@main.command()
@click.option("--port", default=DEFAULT_PORT, type=click.IntRange(1, 65535), show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback needs authentication.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Run Flower without authentication: only on a loopback address.",
)
@click.pass_obj
def flower(state: CliState, port: int, address: str, no_auth: bool) -> None:
    """Run Flower on the fleet's broker: every worker, and every run as a task (its thread
    in the args column). Flower's own settings (FLOWER_*) apply.

    Authentication is required: FLOWER_BASIC_AUTH=user:password[,user2:password2], or
    Flower's OAuth (FLOWER_AUTH, FLOWER_AUTH_PROVIDER, FLOWER_OAUTH2_*). Flower gets the
    broker, never the database URL."""
    check_flower_auth(dict(os.environ), address, no_auth)
    settings = state.settings
    command = flower_command(settings, port, address)
    env = flower_environment(dict(os.environ), settings)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)  # Flower replaces this process: signals reach it

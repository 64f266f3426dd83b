"""The `runqueue` command: worker, migrate, submit and the read-only views."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from runqueue.errors import RunQueueError
from runqueue.settings import Settings


class CliState:
    """Settings built once from the environment and the global options."""

    def __init__(self, overrides: dict[str, Any]):
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(**self.overrides)
        return self._settings

    def export(self) -> None:
        """Make the settings visible to child processes and to `workers.app` imports."""
        for name, value in self.overrides.items():
            if value is not None:
                os.environ[f"RUNQUEUE_{name.upper()}"] = str(value)

    def app(self):  # noqa: ANN201
        from runqueue.app import load_app

        self.export()
        return load_app(self.settings.app)

    def manager(self):  # noqa: ANN201
        from runqueue.registry import SyncRunManager

        return SyncRunManager(self.app())


def clean_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """A runqueue error is one line on stderr and exit 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RunQueueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.option("--database-url", envvar="RUNQUEUE_DATABASE_URL", help="SQLAlchemy URL.")
@click.option("--broker-url", envvar="RUNQUEUE_BROKER_URL", help="Celery broker URL.")
@click.option("--data-dir", envvar="RUNQUEUE_DATA_DIR", help="Embedded data directory.")
@click.option("--app", "app_path", envvar="RUNQUEUE_APP", help="Celery app, module:attribute.")
@click.option("--queue", envvar="RUNQUEUE_QUEUE", help="Celery queue for runs.")
@click.pass_context
def main(ctx: click.Context, database_url, broker_url, data_dir, app_path, queue) -> None:  # noqa: ANN001
    """runqueue: durable, fleet-safe runs for agent platforms, on Celery and SQL."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(
        dict(
            database_url=database_url,
            broker_url=broker_url,
            data_dir=data_dir,
            app=app_path,
            queue=queue,
        )
    )


@main.command()
@click.pass_obj
@clean_errors
def migrate(state: CliState) -> None:
    """Create or upgrade the database schema."""
    from runqueue.database import migrate as run_migrations
    from runqueue.settings import redact_url

    run_migrations(state.settings)
    click.echo(f"database at {redact_url(state.settings.database_url)} is up to date")


@main.command()
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option("--hostname", "-n", default=None, help="Worker node name.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.pass_obj
@clean_errors
def worker(
    state: CliState, concurrency: int, pool: str, hostname: str | None, loglevel: str
) -> None:
    """Start a worker of the fleet (task events on, so Flower sees it)."""
    app = state.app()
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--task-events",
        f"--queues={state.settings.queue}",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@main.command()
@click.argument("assistant")
@click.option("--thread", "thread_id", required=True, help="Thread id.")
@click.option(
    "--strategy",
    default="reject",
    show_default=True,
    help="reject, interrupt, rollback or enqueue.",
)
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, as JSON.")
@click.option("--wait", is_flag=True, help="Wait for the final status.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@click.pass_obj
@clean_errors
def submit(
    state: CliState,
    assistant: str,
    thread_id: str,
    strategy: str,
    kwargs_json: str,
    wait: bool,
    timeout: float,
) -> None:
    """Create a run of ASSISTANT on a thread, applying the strategy."""
    from runqueue.errors import InvalidPayloadError

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise InvalidPayloadError(f"--kwargs is not JSON: {exc}") from None
    manager = state.manager()
    run = manager.create_or_reject(thread_id, assistant, kwargs=kwargs, multitask_strategy=strategy)
    if wait:
        run = manager.join(run.run_id, timeout=timeout)
    click.echo(
        json.dumps(
            {
                "run_id": run.run_id,
                "thread_id": run.thread_id,
                "status": run.status.value,
                "result": run.result,
                "error": run.error,
            }
        )
    )
    if wait and run.status.value != "success":
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

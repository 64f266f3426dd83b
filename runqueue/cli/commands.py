"""The `runqueue` command: demo, worker, migrate, submit, cancel and the read-only views."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import click

from runqueue import validation
from runqueue.errors import RunQueueError, first_line
from runqueue.records import AbortAction, MultitaskStrategy, RunStatus
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


class CliError(click.ClickException):
    """What the command says when it fails: `error: ...`, one line on stderr, exit 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {first_line(self.message) or 'failed'}", err=True)


class RunQueueGroup(click.Group):
    """Every command's runqueue errors (and timeouts) end as a CliError: no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunQueueError as exc:
            raise CliError(str(exc)) from None
        except TimeoutError as exc:
            raise CliError(str(exc) or "timed out") from None


class EnumChoice(click.Choice):
    """click.Choice over an enum's values (listed in --help). A value outside it gets the
    library's own error through `parse`, one line like every other error."""

    def __init__(self, members: type[Enum], parse: Callable[[Any], Enum]):
        super().__init__([member.value for member in members])
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self.parse(value)


class _NoHostnameFilter(logging.Filter):
    """kombu warns that filesystem:// has no hostname, on every connection: noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No hostname was supplied" not in record.getMessage()


@click.group(cls=RunQueueGroup)
@click.option("--database-url", envvar="RUNQUEUE_DATABASE_URL", help="SQLAlchemy URL.")
@click.option("--broker-url", envvar="RUNQUEUE_BROKER_URL", help="Celery broker URL.")
@click.option("--data-dir", envvar="RUNQUEUE_DATA_DIR", help="Embedded data directory.")
@click.option("--app", "app_path", envvar="RUNQUEUE_APP", help="Celery app, module:attribute.")
@click.option("--queue", envvar="RUNQUEUE_QUEUE", help="Celery queue for runs.")
@click.pass_context
def main(ctx: click.Context, database_url, broker_url, data_dir, app_path, queue) -> None:  # noqa: ANN001
    """runqueue: durable, fleet-safe runs for agent platforms, on Celery and SQL."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.getcwd() not in sys.path:
        # As `celery -A`: `runqueue --app chat:app` finds chat.py in the current directory.
        sys.path.insert(0, os.getcwd())
    logging.getLogger("kombu.connection").addFilter(_NoHostnameFilter())
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
def migrate(state: CliState) -> None:
    """Create or upgrade the database schema."""
    from runqueue.settings import redact_url
    from runqueue.store.database import migrate as run_migrations

    run_migrations(state.settings)
    from runqueue.errors import ExtraNotInstalledError
    from runqueue.store.decisions import RunStore

    try:  # LangGraph's tables, made by its official saver's setup(), when the extra is there
        from runqueue.langgraph import setup_checkpointer
    except ExtraNotInstalledError:
        pass
    else:
        setup_checkpointer(RunStore(state.settings.database_url))
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
        # Mingle syncs revoked ids between workers at start-up (about 1 s); runqueue keeps
        # every cancel in the database, so there is nothing to sync.
        "--without-mingle",
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
    type=EnumChoice(MultitaskStrategy, validation.strategy),
    default=MultitaskStrategy.reject.value,
    show_default=True,
    help="What to do when the thread already has a run in flight.",
)
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, as JSON.")
@click.option("--wait", is_flag=True, help="Wait for the final status.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@click.pass_obj
def submit(
    state: CliState,
    assistant: str,
    thread_id: str,
    strategy: MultitaskStrategy,
    kwargs_json: str,
    wait: bool,
    timeout: float,
) -> None:
    """Create a run of ASSISTANT on a thread, applying the strategy."""
    from runqueue.dispatch import check_broker
    from runqueue.errors import InvalidPayloadError

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise InvalidPayloadError(f"--kwargs is not JSON: {exc}") from None
    validation.thread_id(thread_id)
    manager = state.manager()
    check_broker(manager.app)
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
    if wait and run.status is not RunStatus.success:
        sys.exit(2)


@main.command()
@click.option("--thread", "thread_id", default=None, help="Only this thread's runs.")
@click.option(
    "--status",
    type=EnumChoice(RunStatus, validation.status),
    default=None,
    help="Only runs in this status.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_obj
def runs(state: CliState, thread_id: str | None, status: RunStatus | None, limit: int) -> None:
    """List runs, newest first."""
    from runqueue.cli.render import console, runs_table

    records = state.manager().list_runs(thread_id=thread_id, status=status, limit=limit)
    console().print(runs_table(records, title=f"{len(records)} runs"))


@main.command()
@click.argument("run_id")
@click.pass_obj
def show(state: CliState, run_id: str) -> None:
    """Show a run and its transition history."""
    from runqueue.cli.render import console, events_table, run_table

    manager = state.manager()
    run = manager.get(validation.run_id(run_id))
    if run is None:
        raise CliError(f"no run {run_id}")
    out = console()
    out.print(run_table(run))
    out.print(events_table(manager.events(run.run_id)))


@main.command()
@click.argument("run_id")
@click.option(
    "--action",
    type=EnumChoice(AbortAction, validation.abort_action),
    default=AbortAction.interrupt.value,
    show_default=True,
    help="interrupt (keep its checkpoints) or rollback (delete them).",
)
@click.pass_obj
def cancel(state: CliState, run_id: str, action: AbortAction) -> None:
    """Cancel a pending or running run."""
    from runqueue.dispatch import check_broker

    manager = state.manager()
    run = manager.get(validation.run_id(run_id))
    if run is None:
        raise CliError(f"no run {run_id}")
    if run.status is RunStatus.running:
        check_broker(manager.app)  # the revoke must reach the worker
    if not manager.cancel(run.run_id, action=action):
        current = manager.get(run.run_id)
        raise CliError(f"run {run.run_id} is already {current.status.value if current else 'gone'}")
    current = manager.get(run.run_id)
    click.echo(f"cancelled run {run.run_id} ({action.value}); status now {current.status.value}")


@main.command()
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_obj
def threads(state: CliState, limit: int) -> None:
    """List threads with their run counts by status."""
    from runqueue.cli.render import console, threads_table

    console().print(threads_table(state.manager().threads(limit)))


@main.command()
@click.option("--database-url", default=None, help="Run the demo on this database.")
@click.option("--broker-url", default=None, help="Run the demo on this broker.")
@click.option("--concurrency", "-c", type=int, default=4, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the temporary data directory.")
@click.pass_obj
def demo(
    state: CliState,
    database_url: str | None,
    broker_url: str | None,
    concurrency: int,
    keep: bool,
) -> None:
    """Start a worker, exercise every strategy and a cancel, and check each guarantee.

    Embedded by default (SQLite and a filesystem broker in a fresh temporary directory);
    --database-url and --broker-url run the same demo on PostgreSQL and Redis."""
    import shutil
    import tempfile
    import uuid

    from runqueue.cli.demo import run_demo
    from runqueue.cli.render import console
    from runqueue.dispatch import check_broker

    overrides = state.overrides
    if database_url:
        overrides["database_url"] = database_url
    if broker_url:
        overrides["broker_url"] = broker_url
    temporary = overrides.get("data_dir") is None
    if temporary:
        overrides["data_dir"] = tempfile.mkdtemp(prefix="runqueue-demo-")
    if overrides.get("queue") is None:
        overrides["queue"] = f"runqueue-demo-{uuid.uuid4().hex[:8]}"
    data_dir = Path(overrides["data_dir"])
    try:
        app = state.app()
        if not app.runqueue.settings.is_embedded_broker:
            check_broker(app)
        passed = run_demo(app, concurrency=concurrency, console=console())
    except BaseException:
        if temporary and not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    if not passed:
        click.echo(f"demo data and worker log kept in {data_dir}")
        sys.exit(1)
    if temporary and not keep:
        shutil.rmtree(data_dir, ignore_errors=True)


@main.command()
@click.pass_obj
def reap(state: CliState) -> None:
    """One maintenance pass: publish runs that never left, reap runs whose worker died
    (for cron or a Kubernetes CronJob; workers also do this themselves)."""
    from runqueue.worker.maintenance import run_once

    relayed, reaped = run_once(state.app())
    click.echo(json.dumps({"relayed": relayed, "reaped": reaped}))


if __name__ == "__main__":  # pragma: no cover
    main()

"""The `runqueue` command: the group and its one-line errors, the global options, and demo,
worker, migrate and reap (submit and cancel: run_commands.py; the views: views.py)."""

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

from runqueue.errors import RunQueueError, describe, first_line
from runqueue.settings import DEFAULT_APP, Settings

logger = logging.getLogger(__name__)

DEMO_IMPORTS = "workers.assistants:register_with_journal"  # the examples, their journal on


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

    def forget_settings(self) -> None:
        """The overrides changed: build the settings again at the next use."""
        self._settings = None

    def export(self) -> None:
        """Make the settings visible to child processes and to `workers.app` imports."""
        for name, value in self.overrides.items():
            if value is not None:
                os.environ[f"RUNQUEUE_{name.upper()}"] = str(value)

    def app(self):  # noqa: ANN201
        """The app of the settings: from --config's langgraph.json, else --app's module."""
        from runqueue.registry.base import app_for

        self.export()
        return app_for(self.settings)

    def manager(self):  # noqa: ANN201
        from runqueue.registry import SyncRunManager

        return SyncRunManager(self.app())

    def queries(self):  # noqa: ANN201
        """The read-only queries, without loading the app: a read creates no file or folder
        (a missing SQLite database is SchemaMissingError, not a new empty file)."""
        from runqueue.store import RunQueries, RunStore

        settings = self.settings
        return RunQueries(
            RunStore(settings.database_url, settings.republish_after, settings.database_pool_size)
        )


class CliError(click.ClickException):
    """What the command says when it fails: `error: ...`, one line on stderr, exit 1 (2 for
    a usage error: a missing argument, an unknown option, a value outside the choices)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {first_line(self.message) or 'failed'}", err=True)


def one_line(error: click.ClickException) -> CliError:
    """click's own error (usage, bad value) as one line, with its exit code; click prints
    the usage and a hint on lines of their own."""
    message = error.format_message()
    ctx = getattr(error, "ctx", None)
    if isinstance(error, click.UsageError) and ctx is not None:
        message = f"{first_line(message)} (see '{ctx.command_path} --help')"
    return CliError(message, exit_code=error.exit_code)


class RunQueueGroup(click.Group):
    """Every error ends as one line on stderr: runqueue's, click's and (last resort) any
    other exception; no traceback."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `runqueue` alone prints the help
        except click.ClickException as exc:
            raise (exc if isinstance(exc, CliError) else one_line(exc)) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.exceptions.NoArgsIsHelpError):
            raise
        except CliError:
            raise
        except click.ClickException as exc:
            raise one_line(exc) from None
        except RunQueueError as exc:
            raise CliError(str(exc)) from None
        except TimeoutError as exc:
            raise CliError(str(exc) or "timed out") from None
        except BrokenPipeError:
            # The reader went away (`runqueue runs --json | head`): stop quietly, as a shell
            # tool does; stdout to /dev/null so that the interpreter's final flush is silent.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as exc:  # a bug or an unforeseen driver error: still one line
            logger.debug("unexpected error", exc_info=True)
            raise CliError(f"unexpected error: {describe(exc)}") from None


class EnumChoice(click.Choice):
    """click.Choice over an enum's values (listed in --help). A value outside it is a usage
    error (exit 2) with the library's own message, which lists the choices."""

    def __init__(self, members: type[Enum], parse: Callable[[Any], Enum]):
        super().__init__([member.value for member in members])
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value)
        except RunQueueError as exc:
            self.fail(str(exc), param, ctx)


class _NoHostnameFilter(logging.Filter):
    """kombu warns that filesystem:// has no hostname, on every connection: noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No hostname was supplied" not in record.getMessage()


GLOBAL_HELP_EPILOG = (
    "Every setting is also a RUNQUEUE_<NAME> environment variable (README, Configuration); "
    "an option given here wins. Errors are one line on stderr: exit 1, or 2 for a usage error."
)


@click.group(cls=RunQueueGroup, epilog=GLOBAL_HELP_EPILOG)
@click.version_option(
    package_name="runqueue", prog_name="runqueue", message="%(prog)s %(version)s"
)  # the installed distribution's version (importlib.metadata)
@click.option(
    "--database-url",
    envvar="RUNQUEUE_DATABASE_URL",
    show_envvar=True,
    help="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://... [default: a SQLite "
    "file in the data directory]",
)
@click.option(
    "--broker-url",
    envvar="RUNQUEUE_BROKER_URL",
    show_envvar=True,
    help="Celery broker URL (redis://...) [default: a filesystem broker in the data directory]",
)
@click.option(
    "--data-dir",
    envvar="RUNQUEUE_DATA_DIR",
    show_envvar=True,
    help="Embedded data directory [default: ~/.local/share/runqueue].",
)
@click.option(
    "--app",
    "app_path",
    envvar="RUNQUEUE_APP",
    show_envvar=True,
    help="Celery app that registers the assistants, module:attribute [default: workers.app:app].",
)
@click.option(
    "--config",
    "config_path",
    envvar="RUNQUEUE_CONFIG",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="A LangGraph project's langgraph.json: serve exactly its graphs (instead of --app).",
)
@click.option(
    "--queue",
    envvar="RUNQUEUE_QUEUE",
    show_envvar=True,
    help="Celery queue for runs [default: runqueue].",
)
@click.pass_context
def main(
    ctx: click.Context, database_url, broker_url, data_dir, app_path, config_path, queue
) -> None:  # noqa: ANN001
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
            # Absolute, so that a child process (an API worker) finds it from any folder.
            config=str(Path(config_path).resolve()) if config_path else None,
            queue=queue,
        )
    )


@main.command()
@click.pass_obj
def migrate(state: CliState) -> None:
    """Create or upgrade the database schema.

    Says what it did (created, upgraded from one revision to another, or nothing) and the
    schema's revision. The only command that creates the database."""
    from runqueue.settings import redact_url
    from runqueue.store import migrate as run_migrations

    migration = run_migrations(state.settings)
    from runqueue.errors import ExtraNotInstalledError
    from runqueue.store import RunStore

    try:  # LangGraph's tables, made by its official saver's setup(), when the extra is there
        from runqueue.langgraph import setup_checkpointer
    except ExtraNotInstalledError:
        pass
    else:
        setup_checkpointer(RunStore(state.settings.database_url))
        from runqueue.langgraph.item_store import index_config, setup_item_store

        # The Store's tables too (its vector tables when store_embed is set), by its setup().
        setup_item_store(RunStore(state.settings.database_url), index_config(state.settings))
    where = redact_url(state.settings.database_url)
    if migration.created:
        click.echo(f"created the schema at {where}: revision {migration.after}")
    elif migration.changed:
        click.echo(
            f"upgraded the schema at {where} from revision {migration.before} to {migration.after}"
        )
    else:
        click.echo(f"the schema at {where} is already at revision {migration.after}; nothing to do")


class WorkerOutcome(logging.Handler):
    """The exit code of `runqueue worker`: 0 only for a stop that was asked for, so that a
    supervisor restarting on failure restarts every other stop. app.worker_main drops
    Celery's exit code, and Celery itself exits 0 where it should not: a cold shutdown
    (SIGQUIT, a second Ctrl+C, a consumer's WorkerTerminate) sends no worker_shutdown and
    leaves the code unset. A bootstep's exception (an unrecoverable error: a worker that
    could not reach its database or broker at start-up, a transport bug at a reconnection)
    is logged CRITICAL by celery.worker: it exits 1 whatever happens after it."""

    WORKER_LOGGER = "celery.worker"  # Celery's WorkController logs through this one

    def __init__(self) -> None:
        super().__init__(level=logging.CRITICAL)
        self.exitcodes: list[int] = []
        self.crashed = False

    def watch(self) -> WorkerOutcome:
        from celery.signals import worker_shutdown

        worker_shutdown.connect(self._on_shutdown, weak=False)
        logging.getLogger(self.WORKER_LOGGER).addHandler(self)
        return self

    def _on_shutdown(self, sender: Any = None, **_: Any) -> None:
        self.exitcodes.append(sender.exitcode or 0)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == self.WORKER_LOGGER:
            self.crashed = True

    def exit_code(self) -> int:
        if self.crashed or not self.exitcodes:
            return 1  # EX_FAILURE, as Celery means it for both
        return self.exitcodes[-1]


@main.command()
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option(
    "--hostname", "-n", default=None, help="Worker node name [default: runqueue-PID@HOST]."
)
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
        # Gossip has each worker consume every other worker's events, for nothing runqueue
        # uses (Flower has its own event consumer), and each broker outage made it log an
        # AttributeError at ERROR (it closes its channel after Celery dropped the connection).
        "--without-gossip",
        # Unique per process, so that two workers on one host are two workers (Celery's
        # default, celery@HOST, is one name for all of them); a live namesake is refused.
        f"--hostname={hostname or f'runqueue-{os.getpid()}@%h'}",
    ]
    outcome = WorkerOutcome().watch()
    app.worker_main(argv)
    if outcome.exit_code():
        sys.exit(outcome.exit_code())


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

    Embedded by default (SQLite and a filesystem broker in a fresh temporary directory,
    deleted after; with --data-dir or RUNQUEUE_DATA_DIR, in that directory, where its runs
    stay); --database-url and --broker-url run the same demo on PostgreSQL and Redis, whose
    runs stay in that database."""
    import shutil
    import tempfile
    import uuid

    from runqueue.celery.dispatch import check_broker
    from runqueue.cli.demo import run_demo
    from runqueue.cli.render import console

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
    if (
        not state.settings.imports
        and state.settings.app == DEFAULT_APP
        and not state.settings.config
    ):
        # The demo judges each guarantee from the example assistants' journals, an option a
        # default install does not serve; its worker serves only the demo's own queue.
        overrides["imports"] = DEMO_IMPORTS
        state.forget_settings()
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
    """One maintenance pass: publish runs that never left, reap runs whose worker died,
    prune threads whose ttl ran out (for cron or a Kubernetes CronJob; workers also do
    this themselves)."""
    from runqueue.celery.app import runtime_of
    from runqueue.worker.maintenance import run_once

    app = state.app()
    relayed, reaped = run_once(app, runtime_of(app))
    click.echo(json.dumps({"relayed": relayed, "reaped": reaped}))


if __name__ == "__main__":  # pragma: no cover
    main()

"""Engines, one per process (created after fork), and the migrations that build the schema."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from runqueue.errors import (
    DatabaseUnavailableError,
    SchemaMissingError,
    SettingsError,
    first_line,
)
from runqueue.settings import Settings, redact_url
from runqueue.store import fork_guard

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PING_AFTER_IDLE_SECONDS = 1.0  # a pooled connection idle longer is pinged before use
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for the write lock
# PostgreSQL ends a session of ours that sits inside a transaction this long (every one of
# ours is a few statements sent back to back): a process cut off from the database between
# a statement and its COMMIT otherwise keeps that statement's row locks until TCP gives up
# on its connection, hours later, and the reaper waits for them all that time.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
READ_ONLY = "runqueue_read_only"  # execution option of a transaction that only reads

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(database_url: str, pool_size: int = 15, *, hide_parameters: bool = True) -> Engine:
    """The engine for this URL in this process; a forked child builds its own. `pool_size`:
    the most connections it opens, each kept open once opened (PostgreSQL); the first
    caller in a process sets it, and whether its errors and logs hide the statements'
    parameters (runs' kwargs, metadata, results: Settings.log_payloads)."""
    key = (os.getpid(), database_url)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = _create_engine(database_url, pool_size, hide_parameters)
    return engine


def dispose_engines() -> None:
    """Forget this process's engines (their pools close)."""
    with _engines_lock:
        for (pid, _), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
        _engines.clear()


def _forget_inherited_engines() -> None:
    # A forked child must never use, or close, the connections its parent holds: closing
    # them would end the parent's sessions. Drop the pools without closing them, and take a
    # fresh lock (another thread of the parent may have held it at the fork).
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_forget_inherited_engines)


def _create_engine(database_url: str, pool_size: int, hide_parameters: bool) -> Engine:
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise SettingsError(f"invalid database URL: {redact_url(database_url)}") from None
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(database_url, hide_parameters)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # Every connection the pool opens stays open (no overflow): overflow connections are
    # closed at check-in whenever the pool is full, so a process with more concurrent
    # callers than pool_size opened and closed one per call (docs/operations.md, "Sizing
    # the connection pool"). Callers beyond pool_size wait for a connection instead.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        hide_parameters=hide_parameters,
        connect_args={"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {},
    )
    _ping_idle_connections(engine)
    if url.get_backend_name() == "postgresql":
        _bound_idle_transactions(engine)
    return engine


def _bound_idle_transactions(engine: Engine) -> None:
    """Set idle_in_transaction_session_timeout on every connection the engine opens: with a
    SET, not the `options` startup parameter, which PgBouncer refuses or ignores."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute(
                f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}"
            )
        finally:
            dbapi_connection.autocommit = autocommit


def _ping_idle_connections(engine: Engine) -> None:
    """pool_pre_ping, but only for a connection that sat idle in the pool: a busy process
    reuses its connections within milliseconds, and a ping per transaction was one round
    trip in ten on the hot path. A connection broken within that window fails its
    transaction with DatabaseUnavailableError, which also empties the pool (SQLAlchemy
    invalidates every pooled connection on a disconnect); status writes retry it."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):  # noqa: ANN001
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):  # noqa: ANN001
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(exc)) from exc


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _create_sqlite_engine(database_url: str, hide_parameters: bool) -> Engine:
    engine = create_engine(
        database_url, connect_args={"timeout": 30}, hide_parameters=hide_parameters
    )
    fork_guard.guard(engine)  # a child forked inside a transaction could never write

    if sqlite_path(database_url) is not None:

        @event.listens_for(engine, "do_connect")
        def _open_existing_only(_dialect, _record, cargs, cparams):  # noqa: ANN001
            # mode=rw: a connection never creates the file (sqlite3 would, empty, with its
            # folders missing an error). Only migrate() creates the database, so a typo in
            # a path, or a read-only command on a fresh machine, leaves nothing behind.
            cargs[0] = f"file:{pathname2url(os.path.abspath(cargs[0]))}?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives any process crash (a killed worker loses no
        # commit); only an OS crash or power loss can drop the last commits. FULL would
        # fsync on every commit, the embedded default's largest cost per run.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        # Every transaction takes the write lock up front: the SQLite equivalent of
        # locking the thread row, so two processes deciding a strategy serialize. A
        # read-only one (StoreBase.reading()) does not: WAL readers need no lock.
        dbapi_connection = connection.connection.dbapi_connection
        if connection.get_execution_options().get(READ_ONLY):
            dbapi_connection.execute("BEGIN")
            return
        dbapi_connection.execute("PRAGMA busy_timeout=0")  # we wait, in small steps
        try:
            if not _spin_for_write_lock(dbapi_connection):
                # Out of time, or another error: once more through SQLAlchemy, which raises
                # its usual OperationalError at once (busy_timeout is still 0: no second wait).
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    return engine


def _spin_for_write_lock(dbapi_connection: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE, retried every few milliseconds while another connection writes
    (the connection's busy_timeout must be 0), for up to SQLITE_BUSY_TIMEOUT_MS.

    SQLite's busy handler sleeps 1, 2, 5, 10 ... then 100 ms between tries, so a writer
    that waited once sleeps on long after the lock is free; a thread decided by many
    processes at once spent most of its time asleep. False: still locked at the deadline,
    or an error other than a lock."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.0002
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                return False
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


# PostgreSQL's undefined_table; SQLite says "no such table: X" (an OperationalError).
UNDEFINED_TABLE = "42P01"
# PostgreSQL's undefined_function: a schema from before migration 0007 has no
# runqueue_create_run (and the rest of store/functions.py).
UNDEFINED_FUNCTION = "42883"
_SQLITE_NO_SUCH_TABLE = "no such table: "


@contextmanager
def unreachable_as_error(database_url: str) -> Iterator[None]:
    """A database that cannot be reached (or refuses the connection) becomes a
    DatabaseUnavailableError naming the URL without its password; one without runqueue's
    tables (or a SQLite file that does not exist) a SchemaMissingError saying to migrate."""
    try:
        yield
    except (OperationalError, InterfaceError, ProgrammingError) as exc:
        missing = schema_missing(database_url, exc)
        if missing is not None:
            raise missing from exc
        if isinstance(exc, ProgrammingError):
            raise
        raise DatabaseUnavailableError(
            f"database unavailable ({redact_url(database_url)}): {first_line(exc.orig or exc)}"
        ) from exc


def create_sqlite_database(database_url: str) -> None:
    """An empty SQLite file (and its folder) if the URL names one that is not there: the
    migrations' first step, as the engine opens existing files only."""
    path = sqlite_path(database_url)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()


def require_database(database_url: str) -> None:
    """SchemaMissingError if the URL names a SQLite file that does not exist: said before
    anything else (the app, its broker folders) is set up for a command that needs it."""
    path = sqlite_path(database_url)
    if path is not None and not path.exists():
        raise SchemaMissingError(f"no database at {path}; run `runqueue migrate`")


def schema_missing(database_url: str, exc: Exception) -> SchemaMissingError | None:
    """The SchemaMissingError that a driver error means, if it means one."""
    path = sqlite_path(database_url)
    if path is not None and not path.exists():
        return SchemaMissingError(f"no database at {path}; run `runqueue migrate`")
    orig = getattr(exc, "orig", None)
    text = str(orig or exc)
    table = None
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == UNDEFINED_TABLE:
        diag = getattr(orig, "diag", None)
        table = first_line(getattr(diag, "message_primary", None) or text)
    elif sqlstate == UNDEFINED_FUNCTION and "function runqueue_" in text:
        table = "no function " + text.split("function ", 1)[1].split("(", 1)[0]
    elif _SQLITE_NO_SUCH_TABLE in text:
        table = text.split(_SQLITE_NO_SUCH_TABLE, 1)[1].split()[0]
        table = f"no table {table}"
    if table is None:
        return None
    return SchemaMissingError(
        f"the database at {redact_url(database_url)} has no runqueue schema, or an older "
        f"one ({table}); run `runqueue migrate`"
    )


@contextmanager
def quiet_alembic() -> Iterator[None]:
    """Alembic's INFO lines (a plugin set up at its import, its context, each revision)
    while runqueue imports it, migrates or reads the revision: seven on every worker start,
    noise; its warnings and errors still show."""
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    if alembic_logger.getEffectiveLevel() < logging.WARNING:
        alembic_logger.setLevel(logging.WARNING)
    try:
        import alembic  # noqa: F401  (its first import logs seven lines at INFO)

        yield
    finally:
        alembic_logger.setLevel(level)


def alembic_config(settings: Settings):  # noqa: ANN201 - alembic is imported lazily
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = settings.database_url
    return config


@dataclass(frozen=True)
class Migration:
    """What migrate() did: the schema revision before (None: no schema) and after."""

    before: str | None
    after: str | None

    @property
    def created(self) -> bool:
        return self.before is None and self.after is not None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def current_revision(settings: Settings) -> str | None:
    """The schema revision the database is at; None if it has no runqueue schema."""
    with (
        quiet_alembic(),
        unreachable_as_error(settings.database_url),
        get_engine(settings.database_url).connect() as connection,
    ):
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(settings: Settings) -> None:
    """DatabaseUnavailableError if the database does not answer; SchemaMissingError if its
    schema is older than this runqueue's latest migration (a worker started before
    `migrate` finished waits for it). A newer schema, one this code does not know, is
    accepted: in a rolling deploy the old workers keep running after the new `migrate`
    (migrations only add, so the old code still reads and writes what it knows)."""
    with quiet_alembic():
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(alembic_config(settings))
        head = script.get_current_head()
        current = current_revision(settings)
        known = {revision.revision for revision in script.walk_revisions()}
    if current is not None and current not in known:
        return  # newer than this code
    if current != head:
        raise SchemaMissingError(
            f"database schema at revision {current or 'none'}, not {head}: run `runqueue migrate`"
        )


def migrate(settings: Settings, revision: str = "head") -> Migration:
    """Bring the schema to `revision`; the only way runqueue creates tables (and, on SQLite,
    the database file and its folder)."""
    logger.info("migrating %s to %s", redact_url(settings.database_url), revision)
    create_sqlite_database(settings.database_url)
    before = current_revision(settings)
    with quiet_alembic(), unreachable_as_error(settings.database_url):
        from alembic import command

        command.upgrade(alembic_config(settings), revision)
    return Migration(before=before, after=current_revision(settings))

"""PostgreSQL: the functions the latest migration installs are exactly the text of
runqueue/store/sql/ (the file a reader opens; migrations are history), signatures included."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files

import psycopg
import pytest
from sqlalchemy.engine import make_url

from runqueue.settings import Settings
from runqueue.store.database import migrate
from tests.conftest import require_services
from tests.support import create_database, drop_database

SQL_FILES = sorted(
    (entry for entry in (files("runqueue.store") / "sql").iterdir() if entry.name.endswith(".sql")),
    key=lambda entry: entry.name,
)
RUNQUEUE_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       pg_get_functiondef(p.oid) AS definition
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema() AND p.proname LIKE 'runqueue\\_%'
"""


@pytest.fixture
def database() -> Iterator[psycopg.Connection]:
    """A fresh PostgreSQL database migrated to head, and an autocommit connection to it."""
    require_services()
    url = create_database()
    try:
        migrate(Settings(database_url=url))
        driver_url = make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(driver_url, autocommit=True) as conn:
            yield conn
    finally:
        drop_database(url)


def runqueue_functions(conn: psycopg.Connection) -> dict[str, tuple[str, str, str]]:
    """Every runqueue_* function: its signature -> (arguments, result, definition)."""
    return {
        signature: (arguments, result, definition)
        for signature, arguments, result, definition in conn.execute(RUNQUEUE_FUNCTIONS)
    }


def test_the_sql_files_are_the_functions_the_migrations_install(database):
    migrated = runqueue_functions(database)
    names = {signature.split("(")[0] for signature in migrated}
    assert {"runqueue_create_run", "runqueue_claim_run", "runqueue_finish_run"} <= names
    assert SQL_FILES, "no .sql file in runqueue/store/sql/"

    for signature in migrated:  # CASCADE: a trigger's function takes its trigger along
        database.execute(f"DROP FUNCTION {signature} CASCADE")
    assert runqueue_functions(database) == {}
    for sql_file in SQL_FILES:
        database.execute(sql_file.read_text())

    assert runqueue_functions(database) == migrated

"""PostgreSQL: the hot transitions as one statement each, calling the SQL functions that
migration 0007 installs (runqueue_create_run, runqueue_claim_run, runqueue_finish_run).

Sent alone on an autocommit connection, each is one round trip where the same statements
sent one by one took five to seven (BEGIN, lock, read, write, history row, COMMIT). The
functions run the statements of decisions.py and claims.py, guards included, so SQLite
keeps those and PostgreSQL gets the same decisions in one call. A run's columns come back
expanded from its row type, `(o.run).*`, under their own names: run_record() reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Boolean, Connection, Text, TextClause, column, text
from sqlalchemy.exc import DBAPIError

from runqueue.store.models import JSONType
from runqueue.store.rows import RUN_COLUMNS

CREATE_RUN_SQL = text(
    "SELECT o.outcome, o.conflict_run_id, o.conflict_status, (o.run).* "
    "FROM runqueue_create_run(:run_id, :thread_id, :assistant_id, :user_id, :strategy, "
    ":check_strategy, :on_disconnect, CAST(:metadata AS jsonb), CAST(:kwargs AS jsonb), "
    ":follow_up_to_run_id, :create_thread, :own_thread, "
    "CAST(:republish_in AS double precision)) AS o"
)

CLAIM_RUN_SQL = text(
    "SELECT o.outcome, o.checkpoint_values, (o.run).* "
    "FROM runqueue_claim_run(:run_id, :worker, :token, "
    "CAST(:lease_seconds AS double precision)) AS o"
)

FINISH_RUN_SQL = text(
    "SELECT o.changed, (o.released).* "
    "FROM runqueue_finish_run(:run_id, :status, :token, CAST(:result AS jsonb), :error, "
    ":worker, :detail, CAST(:from_statuses AS text[]), :claimed_by, :lease_over, "
    "CAST(:republish_in AS double precision)) AS o"
)


# Typed result columns, so SQLAlchemy maps each row by position with the map it compiled
# once, instead of matching 30 untyped names at every call (0.3 ms of CPU a transition).
_RUN = [column(c.name, c.type) for c in RUN_COLUMNS]
CREATE_RUN = CREATE_RUN_SQL.columns(
    column("outcome", Text), column("conflict_run_id", Text), column("conflict_status", Text), *_RUN
)
CLAIM_RUN = CLAIM_RUN_SQL.columns(
    column("outcome", Text), column("checkpoint_values", JSONType), *_RUN
)
FINISH_RUN = FINISH_RUN_SQL.columns(column("changed", Boolean), *_RUN)


def as_json(value: Any) -> str | None:
    """A JSON parameter as text (None stays SQL NULL: the column keeps its value)."""
    return None if value is None else json.dumps(value)


def pipelined(
    conn: Connection, statement: TextClause, params: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Execute `statement` once per parameter set in psycopg's pipeline mode (executemany
    with returning: every call is sent before the first answer is read), in the caller's
    transaction, and return each call's one row by column name. Driver errors come back as
    SQLAlchemy's, as for conn.execute, so the store maps them the same way."""
    if not params:
        return []
    driver_sql = _DRIVER_SQL.get(statement.text)
    if driver_sql is None:  # :name -> %(name)s, psycopg's own placeholders
        driver_sql = _DRIVER_SQL[statement.text] = re.sub(
            r"(?<!:):(\w+)", r"%(\1)s", statement.text
        )
    driver = conn.connection.driver_connection
    try:
        with driver.cursor(row_factory=dict_row) as cursor:
            cursor.executemany(driver_sql, params, returning=True)
            rows = []
            while True:
                rows.append(cursor.fetchone())
                if not cursor.nextset():
                    break
    except psycopg.Error as exc:
        raise DBAPIError.instance(driver_sql, params, exc, psycopg.Error) from exc
    return rows


_DRIVER_SQL: dict[str, str] = {}

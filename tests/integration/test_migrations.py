"""Alembic migrations are the only way the schema is made: they match the models and reverse."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from runqueue import SyncRunManager, create_app
from runqueue.store.database import alembic_config, get_engine
from runqueue.store.models import Base, Run, runqueue_owns
from runqueue.store.transactions import db_now
from tests.support import (
    MIGRATE_COMMAND,
    as_process,
    create_database,
    drop_database,
    settings_env,
)
from workers.assistants import register_with_journal


def schema_drift(database_url: str) -> list:
    with get_engine(database_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": runqueue_owns})
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_models(backend):
    assert schema_drift(backend.settings.database_url) == []


def test_migrations_downgrade_and_upgrade_again(backend):
    config = alembic_config(backend.settings)
    command.downgrade(config, "base")
    with get_engine(backend.settings.database_url).connect() as conn:
        tables = set(conn.dialect.get_table_names(conn))
    assert not tables & {"runs", "threads", "run_events", "checkpoints"}
    command.upgrade(config, "head")
    assert schema_drift(backend.settings.database_url) == []


# The head revision when the migrations lived in runqueue/migrations/, before the layout moved
# them beside the store (runqueue/store/migrations/); a database keeps only the revision id.
HEAD_BEFORE_THE_MOVE = "0002"


@pytest.fixture
def database_url(backend, tmp_path) -> Iterator[str]:
    """An empty database of the module's backend kind."""
    if backend.settings.is_sqlite:
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    url = create_database()
    yield url
    drop_database(url)


@pytest.mark.parametrize("revision", ["0001", HEAD_BEFORE_THE_MOVE])
def test_runqueue_migrate_upgrades_a_database_made_before_the_move(
    backend, database_url, tmp_path, revision
):
    settings = backend.settings.with_overrides(database_url=database_url)
    command.upgrade(alembic_config(settings), revision)
    with get_engine(database_url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO threads (thread_id, metadata, created_at, updated_at) "
                "VALUES ('kept', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )

    migrated = subprocess.run(
        as_process(MIGRATE_COMMAND),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert migrated.returncode == 0, migrated.stderr
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    with get_engine(database_url).connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
        assert conn.execute(text("SELECT thread_id FROM threads")).scalars().all() == ["kept"]
    assert schema_drift(settings.database_url) == []


def test_the_deployment_migration_gives_one_id_and_makes_queued_runs_due(backend, database_url):
    """0009: the database names itself once (one row: a second is refused), and a run queued
    before it, published to the one queue no worker reads any more, is due for the relay at
    once (which sends it to its assistant's queue), not at its backed-off republish time."""
    settings = backend.settings.with_overrides(database_url=database_url, republish_after=3600)
    config = alembic_config(settings)
    command.upgrade(config, "head")
    manager = SyncRunManager(create_app(settings, name="migration-0009"))
    register_with_journal(manager.app)
    queued = manager.create_or_reject("queued-before-0009", "echo")
    command.downgrade(config, "0008")
    with get_engine(database_url).begin() as conn:
        conn.execute(text("UPDATE runs SET publish_count = 5"))
    command.upgrade(config, "0009")
    with get_engine(database_url).connect() as conn:
        ids = conn.execute(text("SELECT deployment_id FROM deployment")).scalars().all()
        due = (
            conn.execute(
                select(Run.publish_count).where(
                    Run.run_id == queued.run_id, Run.next_publish_at <= db_now()
                )
            )
            .scalars()
            .all()
        )
    assert len(ids) == 1 and len(ids[0]) == 12
    assert due == [0]
    with pytest.raises(IntegrityError), get_engine(database_url).begin() as conn:
        conn.execute(text("INSERT INTO deployment (singleton, deployment_id) VALUES (2, 'other')"))


def test_the_thread_retention_migration_keeps_checkpoints_and_their_cascade(backend, database_url):
    """0010: run_checkpoints is rebuilt on SQLite (run_id may be NULL): its rows stay, and
    deleting a run still deletes its checkpoints; the downgrade drops the copies' rows (no
    run) and the ttl columns."""
    settings = backend.settings.with_overrides(database_url=database_url)
    config = alembic_config(settings)
    # The run is made by today's code at head (whose statements name today's columns), then
    # the schema goes back to 0009 under it.
    command.upgrade(config, "head")
    manager = SyncRunManager(create_app(settings, name="migration-0010"))
    register_with_journal(manager.app)
    run = manager.create_or_reject("before-0010", "echo")
    assert manager.set_status(run.run_id, "success")  # no worker here: ended by hand
    command.downgrade(config, "0009")
    with get_engine(database_url).begin() as conn:
        conn.execute(
            text(
                'INSERT INTO run_checkpoints (thread_id, run_id, "values", created_at) '
                "VALUES ('before-0010', :run, '{\"n\": 1}', CURRENT_TIMESTAMP)"
            ),
            {"run": run.run_id},
        )
    command.upgrade(config, "head")
    assert [c.values for c in manager.checkpoints("before-0010")] == [{"n": 1}]
    copy = manager.copy_thread("before-0010")
    assert [c.run_id for c in manager.checkpoints(copy.thread_id)] == [None]
    with get_engine(database_url).begin() as conn:
        conn.execute(text("DELETE FROM runs WHERE run_id = :run"), {"run": run.run_id})
    assert manager.checkpoints("before-0010") == []  # ON DELETE CASCADE survived the rebuild
    assert len(manager.checkpoints(copy.thread_id)) == 1

    command.downgrade(config, "0009")
    with get_engine(database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_checkpoints")).scalar_one() == 0
        columns = {c["name"] for c in sa_inspect(conn).get_columns("threads")}
    assert not columns & {"ttl_strategy", "ttl_minutes", "ttl_swept_at"}
    command.upgrade(config, "head")
    assert schema_drift(database_url) == []

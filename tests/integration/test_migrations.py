"""Alembic migrations are the only way the schema is made: they match the models and reverse."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from runqueue.store.database import alembic_config, get_engine
from runqueue.store.models import Base


def schema_drift(backend) -> list:
    with get_engine(backend.settings.database_url).connect() as conn:
        context = MigrationContext.configure(conn)
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_models(backend):
    assert schema_drift(backend) == []


def test_migrations_downgrade_and_upgrade_again(backend):
    config = alembic_config(backend.settings)
    command.downgrade(config, "base")
    with get_engine(backend.settings.database_url).connect() as conn:
        tables = set(conn.dialect.get_table_names(conn))
    assert not tables & {"runs", "threads", "run_events", "checkpoints"}
    command.upgrade(config, "head")
    assert schema_drift(backend) == []

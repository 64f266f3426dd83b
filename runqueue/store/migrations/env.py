"""Alembic environment: runs the migrations on the URL runqueue's settings give."""

from __future__ import annotations

from alembic import context

from runqueue.store.database import create_sqlite_database, get_engine
from runqueue.store.models import Base, runqueue_owns

config = context.config
database_url = config.attributes["database_url"]
create_sqlite_database(database_url)  # only migrations create a SQLite database

with get_engine(database_url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=runqueue_owns,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

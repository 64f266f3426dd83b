"""Alembic environment: runs the migrations on the URL runqueue's settings give."""

from __future__ import annotations

from alembic import context

from runqueue.store.database import get_engine
from runqueue.store.models import Base, runqueue_owns

config = context.config
database_url = config.attributes["database_url"]

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

"""Alembic's environment: always given an open connection by common.store.migrate."""

from __future__ import annotations

from alembic import context

from common.store.tables import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

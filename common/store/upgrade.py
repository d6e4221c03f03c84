"""The bridge for a store made before versioned migrations: the tables, columns and indexes added since.

Only common.store.migrate runs it, on an unversioned store (no alembic_version), before stamping it at head
(see common.store.schema_plan): it adds the tables, the nullable columns and the indexes the tables now
declare; nothing is ever dropped or changed. An index that the data already breaks (a unique one) is left
out, with a warning that says why. A versioned store is only ever changed by its migrations.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from common.store.tables import metadata

log = logging.getLogger("converge.store")


def upgrade(engine: Engine) -> list[str]:
    """Add what the tables declare and the store lacks; returns what was added, for the log."""
    added: list[str] = []
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:  # new since the store was made (converge_policies...)
            with engine.begin() as conn:
                table.create(conn, checkfirst=True)
            added.append(f"table {table.name}")
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        with engine.begin() as conn:
            for column in table.columns:
                if column.name not in columns and column.nullable:
                    kind = column.type.compile(engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                    added.append(f"column {table.name}.{column.name}")
        for index in table.indexes:
            if index.name in indexes:
                continue
            try:
                with engine.begin() as conn:
                    index.create(conn)
            except IntegrityError as exc:
                log.warning("index %s not added: the store's data breaks it (%s)", index.name, exc.orig)
                continue
            added.append(f"index {index.name}")
    return added

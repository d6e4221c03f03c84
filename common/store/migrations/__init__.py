"""The store's alembic migrations, run in code by common.store.migrate (no alembic.ini)."""

"""A store made by a release before versioned migrations is bridged to head when it is opened, then stamped."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy

from common.store import migrate, open_store


def test_an_unversioned_store_without_the_newer_tables_columns_and_indexes_gets_them_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_store(url).close()
    old = sqlalchemy.create_engine(url)
    with old.begin() as conn:  # what a store of an older release lacks, without a recorded revision
        conn.execute(sqlalchemy.text("DROP TABLE alembic_version"))
        conn.execute(sqlalchemy.text("DROP INDEX ux_workflows_active_digest"))
        conn.execute(sqlalchemy.text("ALTER TABLE converge_steps DROP COLUMN lost_attempt"))
        conn.execute(sqlalchemy.text("DROP TABLE converge_policies"))
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO converge_workflows (id, name, digest, state, history, created_at, updated_at, "
                "source) VALUES ('w1', 'n', 'd', 'running', 0, 1, 1, 's')"
            )
        )
    old.dispose()

    store = open_store(url)
    try:
        assert store.migration is not None and store.migration.from_revision is None
        assert migrate.current_revision(store.engine) == migrate.head()
        assert migrate.schema_diff(store.engine) == []
        inspector = sqlalchemy.inspect(store.engine)
        assert "lost_attempt" in {c["name"] for c in inspector.get_columns("converge_steps")}
        assert "ux_workflows_active_digest" in {
            i["name"] for i in inspector.get_indexes("converge_workflows")
        }
        assert store.workflow("w1") is not None
        store.set_policy("web", {"throttle": 5}, "admin", 1.0)
        assert [r.value for r in store.policies("web")] == [5]
    finally:
        store.close()

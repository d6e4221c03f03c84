"""The store's migrations, on SQLite and PostgreSQL: an older store keeps every row through an upgrade,
the migrations reach exactly today's tables, and `converge engine migrate` / `engine run --no-migrate`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Text
from sqlalchemy.pool import QueuePool

from common.store import Pool, migrate, open_store
from common.store.tables import metadata as today
from tests.integration.conftest import SECURITY_VARIABLES, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store of its own: a SQLite file, or a PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database() as url:
        yield url


def _value(column: Column[Any], n: int) -> Any:
    """A value for `column` that tells row n apart, of the column's type."""
    kind = column.type
    if isinstance(kind, Boolean):
        return n % 2 == 1
    if isinstance(kind, Integer):
        return n * 7 + 1
    if isinstance(kind, Float):
        return n + 0.5
    if isinstance(kind, (Text, String)):
        text = f"{column.name}-{n}"
        length = getattr(kind, "length", None)
        return text[-length:] if length else text
    raise AssertionError(f"no test value for {column.table.name}.{column.name} ({kind})")


def fill_every_table(engine: sqlalchemy.Engine, rows: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Rows in every table the store has (as reflected, whatever its revision); returns what was written."""
    old = MetaData()
    old.reflect(engine)
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        for table in old.sorted_tables:
            if table.name == "alembic_version":
                continue
            batch = [{c.name: _value(c, n) for c in table.columns} for n in range(rows)]
            if "state" in table.c and table.name == "converge_workflows":  # one active per digest
                for row in batch:
                    row["state"] = "succeeded"
            conn.execute(table.insert(), batch)
            written[table.name] = batch
    return written


def assert_rows_intact(engine: sqlalchemy.Engine, written: dict[str, list[dict[str, Any]]]) -> None:
    now = MetaData()
    now.reflect(engine)
    with engine.connect() as conn:
        for name, rows in written.items():
            table = now.tables[name]
            found = [dict(r) for r in conn.execute(sqlalchemy.select(table)).mappings()]
            assert len(found) == len(rows), name
            for row in rows:
                assert any(all(f[k] == v for k, v in row.items()) for f in found), (name, row)


def test_a_store_made_at_the_first_migration_keeps_every_row_through_the_upgrade(store_url: str) -> None:
    engine = sqlalchemy.create_engine(store_url)
    migrate.upgrade_to(engine, "0001")
    assert migrate.current_revision(engine) == "0001"
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    assert "converge_policies" not in tables and "converge_schedules" not in tables  # a real older store
    written = fill_every_table(engine)
    assert set(written) >= {"converge_workflows", "converge_steps", "converge_tokens"}

    result = migrate.upgrade_to_head(engine)
    assert (result.from_revision, result.to_revision) == ("0001", migrate.head())
    assert result.applied and result.applied[-1] == migrate.head()
    assert_rows_intact(engine, written)
    assert migrate.schema_diff(engine) == []
    engine.dispose()

    store = open_store(store_url)
    try:
        assert store.migration is not None and store.migration.current
        view = store.workflow("id-0")
        assert view is not None and view.name == "name-0"
        store.set_policy("web", {"throttle": 5}, "admin", 1.0)  # the tables added since are usable
        assert [r.value for r in store.policies("web")] == [5]
    finally:
        store.close()


def test_the_migrations_reach_exactly_the_tables_the_code_declares(store_url: str) -> None:
    engine = sqlalchemy.create_engine(store_url)
    migrate.upgrade_to_head(engine)
    assert migrate.schema_diff(engine) == []
    # and the check fails when a column is declared without a migration
    ahead = MetaData()
    for table in today.sorted_tables:
        table.to_metadata(ahead)
    ahead.tables["converge_steps"].append_column(Column("added_without_migration", Text))
    diff = migrate.schema_diff(engine, ahead)
    assert [d[0] for d in diff] == ["add_column"] and diff[0][3].name == "added_without_migration"
    engine.dispose()


def test_a_fresh_store_opened_is_at_head(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.migration is not None
        assert (store.migration.from_revision, store.migration.to_revision) == (None, migrate.head())
        assert migrate.current_revision(store.engine) == migrate.head()
        assert migrate.schema_diff(store.engine) == []
    finally:
        store.close()


def converge(*args: str, store_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECURITY_VARIABLES)}
    env["CONVERGE_STORE_URL"] = store_url
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def old_unversioned_store(url: str) -> dict[str, list[dict[str, Any]]]:
    """A store as a release before versioned migrations made it: the 0001 tables, no alembic_version."""
    engine = sqlalchemy.create_engine(url)
    migrate.upgrade_to(engine, "0001")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE alembic_version"))
    written = fill_every_table(engine)
    engine.dispose()
    return written


def test_engine_migrate_upgrades_an_unversioned_store_and_keeps_its_rows(store_url: str) -> None:
    written = old_unversioned_store(store_url)

    result = converge("engine", "migrate", "--json", store_url=store_url)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["from"] is None and document["to"] == migrate.head() and document["applied"]

    engine = sqlalchemy.create_engine(store_url)
    assert migrate.current_revision(engine) == migrate.head()
    assert_rows_intact(engine, written)
    assert migrate.schema_diff(engine) == []
    engine.dispose()


def test_engine_migrate_twice_then_says_the_store_is_current(store_url: str) -> None:
    engine = sqlalchemy.create_engine(store_url)
    migrate.upgrade_to(engine, "0001")
    engine.dispose()

    first = converge("engine", "migrate", store_url=store_url)
    assert first.returncode == 0, first.stderr
    assert f"from revision 0001 to {migrate.head()}" in first.stdout
    second = converge("engine", "migrate", store_url=store_url)
    assert second.returncode == 0, second.stderr
    assert "already at revision" in second.stdout
    again = converge("engine", "migrate", "--json", store_url=store_url)
    assert json.loads(again.stdout) == {"from": migrate.head(), "to": migrate.head(), "applied": []}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_engine_run_no_migrate_refuses_a_store_behind_head(store_url: str) -> None:
    engine = sqlalchemy.create_engine(store_url)
    migrate.upgrade_to(engine, "0001")
    engine.dispose()

    bind = f"127.0.0.1:{_free_port()}"
    result = converge(
        "engine", "run", "--no-migrate", "--insecure-http", "--api-bind", bind, store_url=store_url
    )
    assert result.returncode == 2, result.stderr
    assert "converge engine migrate" in result.stderr and "Traceback" not in result.stderr
    engine = sqlalchemy.create_engine(store_url)
    assert migrate.current_revision(engine) == "0001"  # left as it was
    engine.dispose()


def test_engine_migrate_on_an_unreachable_store_exits_3() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/none"
    result = converge("engine", "migrate", store_url=url)
    assert result.returncode == 3, result.stderr
    assert "cannot open the store" in result.stderr and "Traceback" not in result.stderr


def test_engines_starting_at_once_on_postgresql_migrate_one_at_a_time() -> None:
    with postgres_database() as url:
        results: list[migrate.Migration] = []
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def one() -> None:
            engine = sqlalchemy.create_engine(url)
            try:
                start.wait()
                results.append(migrate.upgrade_to_head(engine))
            except BaseException as exc:
                errors.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert len(results) == 4
        assert sum(1 for r in results if r.applied) == 1  # one migrated, the others found it current


def test_the_pool_settings_reach_a_postgresql_store_and_sqlite_ignores_them(store_url: str) -> None:
    store = open_store(store_url, pool=Pool(size=3, max_overflow=4, timeout_s=7, recycle_s=60))
    try:
        pool = store.engine.pool
        if store.engine.dialect.name == "postgresql":
            assert isinstance(pool, QueuePool)
            assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (3, 4, 7, 60)
            assert pool._pre_ping
        else:
            assert not isinstance(pool, QueuePool) or pool.size() != 3
        assert store.workflow("nothing") is None  # and the store works
    finally:
        store.close()

"""Two engines sharing a store (SQLite and PostgreSQL) never both discover one machine: only one of them
starts its import."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.store.sql import SqlStore, open_store
from tests.integration.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of its own: the session's PostgreSQL database is shared, and dropping its tables here
    would leave the migrations' record behind, so the next test's store would find no tables."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database() as found:
        yield found


def test_two_engines_discovering_one_machine_at_once_insert_it_once(url: str) -> None:
    engines: list[SqlStore] = [open_store(url) for _ in range(2)]
    try:
        for round_ in range(20):
            name = f"web{round_}"
            with ThreadPoolExecutor(max_workers=2) as pool:
                won = list(pool.map(lambda s, n=name: s.discover_machine("ou", n, "web", 1.0), engines))
            assert sorted(won) == [False, True], name
        assert len(engines[0].machines("ou")) == 20
    finally:
        for store in engines:
            store.close()

"""The engine's view of its store, from the statements it runs: on a real SQLite file locked by another
connection, as another process would lock it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from common import names
from common.localredis import free_port
from engine.health import StoreWatch, report, store_is_down


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)
    return True


class SqliteStore:
    """What the watch looks for on a store: its SQLAlchemy engine."""

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.engine: Engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": busy_timeout_s})
        event.listen(self.engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
        with self.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))

    def write(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES (1)"))

    def read(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock, as `BEGIN IMMEDIATE` in another process would."""
    holder = sqlite3.connect(db, isolation_level=None)
    yield holder
    holder.close()


def take(holder: sqlite3.Connection) -> None:
    holder.execute("BEGIN IMMEDIATE")


def release(holder: sqlite3.Connection) -> None:
    holder.execute("ROLLBACK")


def test_a_write_refused_by_a_locked_store_marks_it_down_until_a_write_succeeds(
    db: Path, lock: sqlite3.Connection
) -> None:
    store = SqliteStore(db, busy_timeout_s=0.05)
    watch = StoreWatch().attach(store)
    take(lock)

    with pytest.raises(OperationalError):
        store.write()
    down = watch.status()
    assert store.read() == 0  # reads still work on WAL SQLite: they do not say the store is back
    still = watch.status()
    release(lock)
    store.write()

    assert not down.ok and down.down_since is not None
    assert down.error is not None and "database is locked" in down.error
    assert still == down
    assert watch.status().ok


def test_a_statement_waiting_longer_than_the_stall_limit_marks_the_store_down(
    db: Path, lock: sqlite3.Connection
) -> None:
    store = SqliteStore(db, busy_timeout_s=30)
    watch = StoreWatch(stall_s=0.2).attach(store)
    take(lock)
    writer = threading.Thread(target=store.write)
    writer.start()
    try:
        stalled = wait_for(lambda: not watch.status().ok, 10, "the waiting write to be seen")
        assert "has waited" in (watch.status().error or "")
    finally:
        release(lock)
        writer.join()

    assert stalled
    assert watch.status().ok


def test_a_statement_the_store_refuses_is_not_an_outage(db: Path) -> None:
    store = SqliteStore(db, busy_timeout_s=1)
    watch = StoreWatch().attach(store)

    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, v) VALUES (1, 1), (1, 2)"))

    assert watch.status().ok


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error")), True),
        (IntegrityError("UPDATE", {}, sqlite3.IntegrityError("poisoned")), False),
        (ValueError("a bug"), False),
    ],
    ids=["operational", "integrity", "other"],
)
def test_only_errors_of_the_store_itself_say_it_is_down(error: Exception, down: bool) -> None:
    assert store_is_down(error) is down


def test_health_reports_a_store_that_is_down_and_what_waits_to_be_recorded() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.xadd(names.STATUS_STREAM, {"e": "{}"})
    client.xadd(names.DEAD_LETTER_STREAM, {"e": "junk"})
    watch = StoreWatch()
    watch.failed(OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked")), wrote=True)

    health: dict[str, Any] = report(client, watch)

    assert health["ok"] is False
    assert health["redis"] == {"ok": True, "error": None}
    assert health["store"]["ok"] is False
    assert "database is locked" in health["store"]["error"]
    assert health["ingest"]["pending"] == 1
    assert health["ingest"]["dead_letters"] == 1
    assert health["ingest"]["store_down_since"].endswith("+00:00")


def test_health_reports_redis_down_without_failing() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))

    health: dict[str, Any] = report(client, StoreWatch())

    assert health["ok"] is False
    assert health["redis"]["ok"] is False and health["redis"]["error"]
    assert health["store"] == {"ok": True, "error": None}
    assert health["ingest"]["pending"] is None

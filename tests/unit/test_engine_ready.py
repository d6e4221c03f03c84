"""`GET /v1/ready`: ready only while the store and Redis answer; otherwise which part is not, never a password."""

from __future__ import annotations

import redis
from sqlalchemy.exc import OperationalError

from common.localredis import free_port
from engine.ready import report, scrub

STORE_URL = "postgresql+psycopg://converge:s3cret@db.example:5432/converge"


class Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def ping(self) -> None:
        if self.error is not None:
            raise self.error


class Redis:
    def __init__(self, error: redis.RedisError | None = None) -> None:
        self.error = error

    def ping(self) -> bool:
        if self.error is not None:
            raise self.error
        return True


def _report(store: Store, client: object, broker_url: str = "redis://:hunter2@127.0.0.1:6379/0") -> dict:
    return report(store, STORE_URL, client, broker_url)  # type: ignore[arg-type]


def test_ready_when_the_store_and_redis_answer() -> None:
    document = _report(Store(), Redis())
    assert document == {
        "ready": True,
        "store": {"ok": True, "error": None},
        "redis": {"ok": True, "error": None},
    }


def test_a_store_that_does_not_answer_is_named_with_what_to_check_and_no_password() -> None:
    down = OperationalError("SELECT 1", {}, Exception(f"connection to {STORE_URL} failed: refused"))
    document = _report(Store(down), Redis())
    assert document["ready"] is False and document["redis"]["ok"] is True
    error = document["store"]["error"]
    assert "the store at postgresql+psycopg://converge:***@db.example:5432/converge" in error
    assert "CONVERGE_STORE_URL" in error
    assert document["error"].startswith("not ready: the store at")
    assert "s3cret" not in str(document)


def test_redis_that_does_not_answer_ping_is_named_with_what_to_check_and_no_password() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    document = _report(Store(), client, f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert document["ready"] is False and document["store"]["ok"] is True
    assert "does not answer PING (ConnectionError" in document["redis"]["error"]
    assert "CONVERGE_BROKER_URL" in document["error"]
    assert "hunter2" not in str(document)


def test_every_url_in_an_error_loses_its_password() -> None:
    text = "failed: redis://user:pw@host:6379/0 then 'postgresql://a:b@c/d'"
    assert scrub(text) == "failed: redis://user:***@host:6379/0 then 'postgresql://a:***@c/d'"

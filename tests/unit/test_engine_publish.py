"""Engine.submit with Redis away: nothing stored when it is down at the start; stored and published later
(by the watchdog's pass) when it goes away between the store's commit and the publish."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from kombu.exceptions import OperationalError

from common.errors import Unreachable
from common.models import StepMessage
from common.settings import load_settings
from common.store import RecordResult, SqlStore, open_store
from engine.core import Engine
from engine.dispatcher import Dispatcher
from engine.eventkeys import EventKeys
from workflows.registry import default_registry

SOURCE = """apiVersion: converge/v1
kind: DesiredState
metadata: {name: publish}
resources:
  - {kind: directory, name: a, role: web, spec: {path: /tmp/a}}
  - {kind: directory, name: b, role: web, depends_on: [directory/a], spec: {path: /tmp/b}}
"""


class FakeRedis:
    def __init__(self) -> None:
        self.up = True

    def ping(self) -> bool:
        if not self.up:
            raise redis.ConnectionError("Connection refused")
        return True

    def set(self, *_: Any, **__: Any) -> None:
        self.ping()

    def hgetall(self, *_: Any) -> dict[bytes, bytes]:
        """No agent has announced itself (the engine reads them to warn of roles without one)."""
        self.ping()
        return {}


class FakeDispatcher:
    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.sent: list[StepMessage] = []

    def publish(self, messages: Iterable[StepMessage]) -> int:
        if self.failure is not None:
            raise self.failure
        batch = list(messages)
        self.sent += batch
        return len(batch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


@pytest.fixture
def parts(store: SqlStore) -> tuple[Engine, FakeRedis, FakeDispatcher]:
    client, dispatcher = FakeRedis(), FakeDispatcher()
    settings = load_settings(broker_url="redis://:s3cret@127.0.0.1:1/0")
    keys = EventKeys(b"k" * 32, store, cast(redis.Redis, client))
    engine = Engine(
        settings, store, cast(redis.Redis, client), cast(Dispatcher, dispatcher), default_registry(), keys
    )
    return engine, client, dispatcher


def test_with_redis_down_submit_stores_nothing_and_says_so(
    parts: tuple[Engine, FakeRedis, FakeDispatcher],
) -> None:
    engine, client, _ = parts
    client.up = False

    with pytest.raises(Unreachable) as caught:
        engine.submit(SOURCE, "estate.yaml")

    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in str(caught.value)
    assert "nothing was stored" in str(caught.value) and "s3cret" not in str(caught.value)
    assert engine.store.workflows() == [] and not engine.republish_wanted


@pytest.mark.parametrize(
    "failure", [redis.ConnectionError("gone"), OperationalError("gone"), OSError("gone")]
)
def test_a_publish_that_fails_after_the_commit_is_done_by_the_watchdog_once_redis_is_back(
    parts: tuple[Engine, FakeRedis, FakeDispatcher], failure: Exception
) -> None:
    engine, client, dispatcher = parts
    dispatcher.failure = failure

    with pytest.raises(Unreachable) as caught:
        engine.submit(SOURCE, "estate.yaml")

    (stored,) = engine.store.workflows()
    assert f"workflow {stored.id} was stored" in str(caught.value)
    assert "dispatched when Redis is back" in str(caught.value)
    assert engine.republish_wanted
    client.up = False
    with pytest.raises(redis.ConnectionError):  # the watchdog's pass while Redis is still away
        engine.republish_if_wanted()
    assert engine.republish_wanted

    client.up, dispatcher.failure = True, None
    assert engine.republish_if_wanted() == 1
    assert [m.step_id for m in dispatcher.sent] == [f"{stored.id}.0"]
    assert not engine.republish_wanted and engine.republish_if_wanted() == 0


def test_a_second_identical_submission_returns_the_first_without_publishing(
    parts: tuple[Engine, FakeRedis, FakeDispatcher],
) -> None:
    engine, _, dispatcher = parts
    first, created = engine.submit(SOURCE, "estate.yaml")
    again, created_again = engine.submit(SOURCE, "estate.yaml")

    assert (created, created_again) == (True, False) and again.id == first.id
    assert len(dispatcher.sent) == 1


def test_releasing_steps_that_cannot_be_published_asks_for_a_republish(
    parts: tuple[Engine, FakeRedis, FakeDispatcher],
) -> None:
    engine, _, dispatcher = parts
    view, _ = engine.submit(SOURCE, "estate.yaml")
    ready = [m.model_copy(update={"step_id": f"{view.id}.1"}) for m in dispatcher.sent]
    dispatcher.failure = redis.ConnectionError("gone")

    with pytest.raises(redis.ConnectionError):
        engine.act(RecordResult(ready=ready))

    assert engine.republish_wanted


def test_a_retry_whose_publish_fails_says_it_will_run_once_redis_is_back(
    parts: tuple[Engine, FakeRedis, FakeDispatcher],
) -> None:
    engine, _, dispatcher = parts
    view, _ = engine.submit(SOURCE, "estate.yaml")
    engine.store.cancel(view.id)
    dispatcher.failure = OperationalError("gone")

    with pytest.raises(Unreachable, match=f"workflow {view.id} will run again"):
        engine.retry(view.id)

    assert engine.republish_wanted

"""The status ingester on a fake Redis and a fake store: the logic of never stranding an event.

Poison entries are isolated and counted, dead-lettered after three refusals; a store that is down counts
against nothing; entries left pending by any failure are read again without a restart; entries whose MAC
does not verify against their agent's key are dropped and counted.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

import fakeredis
import pytest
import redis
from sqlalchemy.exc import IntegrityError, OperationalError

from common import names, signing
from common.errors import BadInput, NotFound
from common.lifecycle import ANY_ROLE, Roles
from common.models import StatusEvent
from common.store import RecordResult, Store
from engine import deadletters
from engine.eventkeys import Grant, Refusal
from engine.ingest import MAX_FAILURES, Ingester, _parse

KEY = b"k" * 32


def lookup(agent: str) -> Grant | Refusal:
    """Agent `a` is known (the key KEY), any other is not."""
    return Grant(KEY, ANY_ROLE) if agent == "a" else Refusal("unknown agent", f"{agent} is unknown")


def event(step: str, seq: int = 1) -> bytes:
    return json.dumps(
        {"workflow_id": "w", "step_id": step, "attempt": 1, "seq": seq, "state": "progress", "agent": "a",
         "at": "2026-11-25T10:00:00+00:00", "progress": 50.0}
    ).encode()  # fmt: skip


class FakeStore:
    """Records what it is given; refuses events of `poison` steps; is down for the next `down` calls."""

    def __init__(self) -> None:
        self.recorded: list[StatusEvent] = []
        self.poison: set[str] = set()
        self.down = 0
        self.calls = 0

    def record(self, events: list[StatusEvent], roles: dict[str, Roles] | None = None) -> RecordResult:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise OperationalError(
                "UPDATE converge_steps", {}, sqlite3.OperationalError("database is locked")
            )
        if any(e.step_id in self.poison for e in events):
            raise IntegrityError("UPDATE converge_steps", {}, sqlite3.IntegrityError("poisoned by the test"))
        self.recorded += events
        return RecordResult(applied=len(events))

    def steps(self) -> list[str]:
        return [e.step_id for e in self.recorded]


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def ingester(client: redis.Redis, store: FakeStore, act: Any = None) -> Ingester:
    ing = Ingester(client, cast(Store, store), act or (lambda result: None), lookup)
    ing.ensure_group()
    return ing


def send(client: redis.Redis, *bodies: bytes) -> list[bytes]:
    """Entries as the agent `a` writes them, signed with its key."""
    return [
        cast(bytes, client.xadd(names.STATUS_STREAM, {"e": body, "s": signing.mac(KEY, body)}))
        for body in bodies
    ]


def drain(ing: Ingester, passes: int = 10) -> None:
    for _ in range(passes):
        ing.run_once(block_ms=1)


def dead_letters(client: redis.Redis) -> list[deadletters.DeadLetter]:
    return deadletters.listing(client)[0]


def test_a_batch_of_events_is_parsed_in_order() -> None:
    entries = [(b"1-0", {b"e": event("w.0", 1)}), (b"2-0", {b"e": event("w.0", 2)})]

    parsed, junk = _parse(entries)

    assert [ev.seq for _, ev in parsed] == [1, 2]
    assert junk == []


def test_events_are_recorded_then_acknowledged_and_deleted(client: redis.Redis, store: FakeStore) -> None:
    send(client, event("w.0"), event("w.1"), event("w.2"))

    drain(ingester(client, store))

    assert store.steps() == ["w.0", "w.1", "w.2"]
    assert client.xlen(names.STATUS_STREAM) == 0
    assert client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)["pending"] == 0


def test_unsigned_forged_and_unknown_agents_entries_are_dropped_counted_and_logged(
    client: redis.Redis, store: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    send(client, event("w.0"))
    client.xadd(names.STATUS_STREAM, {"e": event("w.1")})  # unsigned
    client.xadd(names.STATUS_STREAM, {"e": event("w.2"), "s": signing.mac(b"x" * 32, event("w.2"))})
    tampered = event("w.3").replace(b'"progress": 50.0', b'"progress": 99.0')
    client.xadd(names.STATUS_STREAM, {"e": tampered, "s": signing.mac(KEY, event("w.3"))})
    stranger = event("w.4").replace(b'"agent": "a"', b'"agent": "b"')
    client.xadd(names.STATUS_STREAM, {"e": stranger, "s": signing.mac(KEY, stranger)})
    send(client, event("w.5"))

    drain(ingester(client, store))

    assert store.steps() == ["w.0", "w.5"]
    assert client.hgetall(names.EVENTS_REFUSED) == {
        b"unsigned": b"1",
        b"forged": b"2",
        b"unknown agent": b"1",
    }
    assert client.xlen(names.STATUS_STREAM) == 0 and dead_letters(client) == []
    assert caplog.text.count("refused status entry") == 4 and "Nothing was recorded" in caplog.text


def test_a_poison_entry_does_not_hold_back_the_rest_of_its_batch(
    client: redis.Redis, store: FakeStore
) -> None:
    store.poison = {"w.bad"}
    send(client, event("w.0"), event("w.1"), event("w.bad"), event("w.2"), event("w.3"))
    ing = ingester(client, store)

    ing.run_once(block_ms=1)

    assert store.steps() == ["w.0", "w.1", "w.2", "w.3"]
    [(count, error)] = ing.failures.values()
    assert count == 1 and "poisoned by the test" in error
    assert client.xlen(names.STATUS_STREAM) == 1  # only the poison entry is left, pending


def test_a_refused_entry_is_read_again_and_dead_lettered_after_three_failures(
    client: redis.Redis, store: FakeStore
) -> None:
    store.poison = {"w.bad"}
    [_, bad] = send(client, event("w.0"), event("w.bad"))
    ing = ingester(client, store)

    for _ in range(MAX_FAILURES - 1):
        ing.run_once(block_ms=1)
    assert ing.failures[bad][0] == MAX_FAILURES - 1
    assert dead_letters(client) == []
    ing.run_once(block_ms=1)

    [letter] = dead_letters(client)
    assert letter.source_id == bad.decode()
    assert letter.failures == MAX_FAILURES
    assert "poisoned by the test" in letter.error
    assert letter.event is not None and letter.event["step_id"] == "w.bad"
    assert letter.at is not None
    assert client.xlen(names.STATUS_STREAM) == 0
    assert client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)["pending"] == 0
    assert ing.failures == {}
    # ingestion goes on with the next events
    send(client, event("w.4"))
    drain(ing)
    assert store.steps() == ["w.0", "w.4"]


def test_a_store_that_is_down_counts_against_no_entry_and_is_logged_once(
    client: redis.Redis, store: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = MAX_FAILURES * 3
    send(client, event("w.0"), event("w.1"))
    ing = ingester(client, store)

    for _ in range(MAX_FAILURES * 3):
        assert ing.run_once(block_ms=1) == 0
        assert ing.store_down_since is not None
    assert ing.failures == {}
    assert ing.backoff_s == 5.0  # 0.5 s doubling, capped
    drain(ing)

    assert store.steps() == ["w.0", "w.1"]
    assert dead_letters(client) == []
    assert ing.store_down_since is None
    assert ing.backoff_s == 0.5
    assert caplog.text.count("the store is down") == 1
    assert caplog.text.count("the store is back") == 1


def test_entries_left_pending_by_a_failure_are_read_again_without_a_restart(
    client: redis.Redis, store: FakeStore
) -> None:
    store.down = 1
    send(client, event("w.0"))
    ing = ingester(client, store)
    ing.run_once(block_ms=1)
    send(client, event("w.1"))  # new entries wait until the pending one is recorded

    ing.run_once(block_ms=1)
    assert store.steps() == ["w.0"]
    drain(ing)

    assert store.steps() == ["w.0", "w.1"]


def test_what_could_not_be_published_while_redis_was_away_is_published_once_it_answers(
    client: redis.Redis, store: FakeStore
) -> None:
    attempts: list[RecordResult] = []

    def act(result: RecordResult) -> None:
        attempts.append(result)
        if len(attempts) == 1:
            raise redis.ConnectionError("Redis went away")

    send(client, event("w.0"))
    ing = ingester(client, store, act)
    with pytest.raises(redis.ConnectionError):
        ing.run_once(block_ms=1)
    drain(ing)

    # the recorded result itself is acted on again: a second recording would find only duplicates
    assert attempts[1] is attempts[0]
    assert client.xlen(names.STATUS_STREAM) == 0


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"null", b'{"not": "an event"}', b""],
    ids=["text", "list", "null", "object", "empty"],
)
def test_a_malformed_entry_is_dead_lettered_at_once_with_its_validation_error(
    client: redis.Redis, store: FakeStore, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    [_, junk, _] = send(client, event("w.0"), body, event("w.1"))

    drain(ingester(client, store))

    assert store.steps() == ["w.0", "w.1"]
    [letter] = dead_letters(client)
    assert letter.source_id == junk.decode()
    assert letter.failures == 1
    assert letter.error.startswith("not a status event")
    assert letter.event == (json.loads(body) if body.startswith(b"{") else None)
    assert "dead-lettering malformed status entry" in caplog.text
    assert client.xlen(names.STATUS_STREAM) == 0


def test_an_entry_without_an_event_field_is_dead_lettered_with_its_fields(
    client: redis.Redis, store: FakeStore
) -> None:
    client.xadd(names.STATUS_STREAM, {"x": "y"})

    drain(ingester(client, store))

    [letter] = dead_letters(client)
    assert "no field `e`" in letter.error
    assert letter.raw is not None and "b'x'" in letter.raw


def test_entries_another_consumer_left_unacknowledged_are_taken_over(
    client: redis.Redis, store: FakeStore
) -> None:
    ing = ingester(client, store)
    send(client, event("w.0"), event("w.1"))
    client.xreadgroup(names.STATUS_GROUP, "engine-that-died", {names.STATUS_STREAM: ">"})
    ing.claim_idle_ms = 0

    drain(ing)

    assert store.steps() == ["w.0", "w.1"]
    assert client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)["pending"] == 0


def test_an_entry_deleted_while_pending_is_only_acknowledged(client: redis.Redis, store: FakeStore) -> None:
    ing = ingester(client, store)
    [gone, _] = send(client, event("w.0"), event("w.1"))
    client.xreadgroup(names.STATUS_GROUP, ing.consumer, {names.STATUS_STREAM: ">"})
    client.xdel(names.STATUS_STREAM, gone)

    drain(ing)

    assert store.steps() == ["w.1"]
    assert client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)["pending"] == 0


def test_a_dead_letter_put_back_is_recorded_once_the_store_takes_it(
    client: redis.Redis, store: FakeStore
) -> None:
    store.poison = {"w.bad"}
    send(client, event("w.bad"))
    ing = ingester(client, store)
    drain(ing)
    [letter] = dead_letters(client)

    store.poison = set()
    assert deadletters.retry(client, [letter.id]) == [letter.id]
    drain(ing)

    assert store.steps() == ["w.bad"]
    assert dead_letters(client) == []


def test_dead_letters_are_purged_by_id_or_all_at_once(client: redis.Redis, store: FakeStore) -> None:
    send(client, b"one", b"two", b"three")
    drain(ingester(client, store))
    first, *rest = dead_letters(client)

    assert deadletters.purge(client, [first.id]) == 1
    assert [d.id for d in dead_letters(client)] == [d.id for d in rest]
    assert deadletters.purge(client, []) == 2
    assert dead_letters(client) == []


def test_retrying_an_unknown_dead_letter_names_it_and_changes_nothing(
    client: redis.Redis, store: FakeStore
) -> None:
    send(client, b"junk")
    drain(ingester(client, store))
    [letter] = dead_letters(client)

    with pytest.raises(NotFound, match="no dead letter 1-0"):
        deadletters.retry(client, [letter.id, "1-0"])
    with pytest.raises(BadInput, match="not a dead letter id: nonsense"):
        deadletters.retry(client, ["nonsense"])
    assert [d.id for d in dead_letters(client)] == [letter.id]

"""The singleton duties' lease among engines (engine.duties), on a real Redis, without engine processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common import names
from common.localredis import LocalRedis
from engine.duties import DUTIES, Duties, absent_engines, gone_engines
from tests.integration.conftest import wait_for

TTL_S = 1.0


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


class Calls:
    def __init__(self) -> None:
        self.taken = 0
        self.gone: list[tuple[list[str], list[str]]] = []

    def take(self) -> None:
        self.taken += 1

    def lost(self, gone: list[str], absent: list[str]) -> None:
        self.gone.append((gone, absent))


def duties(client: redis.Redis, engine_id: str, calls: Calls) -> Duties:
    return Duties(client, engine_id, TTL_S, on_take=calls.take, on_gone=calls.lost)


def test_one_engine_holds_the_duties_and_a_clean_stop_hands_them_over_at_once(client: redis.Redis) -> None:
    a_calls, b_calls = Calls(), Calls()
    a, b = duties(client, "a", a_calls), duties(client, "b", b_calls)
    a.start()
    b.start()
    assert (a.leading(), b.leading()) == (True, False)
    assert (a_calls.taken, b_calls.taken) == (1, 0)
    b.tick()
    assert b.describe() == {"engine": "b", "leading": False, "holder": "a", "engines": ["a", "b"]}

    a.stop()
    b.tick()  # the next renewal, without waiting out the TTL
    assert b.leading() and b_calls.taken == 1
    assert b.describe()["holder"] == "b"


def test_a_dead_holder_is_replaced_after_its_ttl_and_its_engine_reported_gone(client: redis.Redis) -> None:
    a_calls, b_calls = Calls(), Calls()
    a, b = duties(client, "a", a_calls), duties(client, "b", b_calls)
    a.start()
    b.start()
    a.tick()
    epoch = int(client.get(names.duties_epoch_key(DUTIES)) or 0)
    # `a` dies: it renews nothing any more. `b` takes over once the lease expires, and no sooner.
    b.tick()
    assert not b.leading()
    wait_for(lambda: (b.tick(), b.leading())[1], 10, "b to take the duties")
    assert b_calls.taken == 1
    assert int(client.get(names.duties_epoch_key(DUTIES)) or 0) == epoch + 1
    # `a` believes it leads only until its renew deadline, before b could take the lease
    assert not a.leading()
    wait_for(lambda: (b.tick(), b_calls.gone)[1], 10, "b to see that a stopped")
    assert b_calls.gone == [(["a"], ["a"])]


def test_a_restarted_engine_takes_its_own_lease_at_once_and_is_not_taken_for_absent(
    client: redis.Redis,
) -> None:
    a_calls, b_calls = Calls(), Calls()
    first = duties(client, "a", a_calls)
    first.start()
    b = duties(client, "b", b_calls)
    b.start()
    # `a` is killed and started again under the same id, well within the lease's TTL
    again = duties(client, "a", a_calls)
    again.start()
    assert again.leading() and a_calls.taken == 2
    assert not b.leading()
    # its earlier run expires: the holder (a's new run) sees engine a gone but not absent
    wait_for(lambda: (b.tick(), again.tick(), a_calls.gone)[2], 10, "the earlier run to expire")
    assert a_calls.gone == [(["a"], [])]


def test_gone_and_absent_engines() -> None:
    before = {"a/1", "b/1", "c/1"}
    now = {"a/1", "b/2"}
    assert gone_engines(before, now) == ["b", "c"]
    assert absent_engines(["b", "c"], now) == ["c"]
    assert gone_engines(now, now) == []


def test_the_entries_a_stopped_engine_read_are_taken_over_at_once(client: redis.Redis) -> None:
    from engine.ingest import Ingester

    client.xgroup_create(names.STATUS_STREAM, names.STATUS_GROUP, id="0", mkstream=True)
    ids = [client.xadd(names.STATUS_STREAM, {"e": b"{}"}) for _ in range(3)]
    client.xreadgroup(names.STATUS_GROUP, "dead", {names.STATUS_STREAM: ">"}, count=10)  # never acknowledged
    ingester = Ingester(client, None, lambda result: None, lambda agent: None, consumer="live", batch=2)  # type: ignore[arg-type]
    ingester.adopt(["dead", "live"])  # its own name is ignored
    ingester._adopt_orphans()
    pending = client.xpending_range(names.STATUS_STREAM, names.STATUS_GROUP, "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(i, b"live") for i in ids]
    consumers = {c["name"] for c in client.xinfo_consumers(names.STATUS_STREAM, names.STATUS_GROUP)}
    assert consumers == {b"live"}

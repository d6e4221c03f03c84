"""An agent's hold on its id, on a real Redis: one holder at a time, renewed and released only by it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from agents.heartbeat import Heartbeat, Link
from agents.identity import RELEASE, RENEW, claim, new_token
from common import names
from common.errors import NotFound, Refused
from common.localredis import LocalRedis
from common.models import AgentInfo
from engine.fleet import forget, list_agents
from tests.integration.conftest import wait_for

TTL_S = 30.0


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    c.flushall()
    yield c
    c.close()


def info(host: str = "h1", pid: int = 100, agent_id: str = "a1") -> AgentInfo:
    now = datetime.now(UTC)
    return AgentInfo(
        id=agent_id, roles=["web"], host=host, pid=pid, version="0", throttle=1, started_at=now, last_seen=now
    )


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_of_many_agents_started_at_once_with_one_id_exactly_one_gets_it(client: redis.Redis) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def start(pid: int) -> None:
        own = redis.Redis(connection_pool=client.connection_pool)
        me = info(host=f"host-{pid}", pid=pid)
        barrier.wait()
        try:
            claim(own, me, new_token(me.host, pid), TTL_S)
            results.append("ok")
        except Refused:
            results.append("refused")

    threads = [threading.Thread(target=start, args=(pid,)) for pid in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == ["ok"] + ["refused"] * 7


def test_a_second_agent_is_refused_with_the_holders_host_and_pid_and_the_ttl(client: redis.Redis) -> None:
    claim(client, info(host="h1", pid=100), new_token("h1", 100), TTL_S)

    with pytest.raises(Refused) as refused:
        claim(client, info(host="h2", pid=200), new_token("h2", 200), TTL_S)

    assert "host h1 (pid 100)" in str(refused.value) and "TTL, 30s" in str(refused.value)


def test_a_restart_on_the_same_host_takes_over_the_id_of_a_dead_process_at_once(client: redis.Redis) -> None:
    gone = dead_pid()
    claim(client, info(pid=gone), new_token("h1", gone), TTL_S)
    token = new_token("h1", 300)

    claim(client, info(pid=300), token, TTL_S)

    assert client.get(names.agent_alive_key("a1")) == token.encode()
    assert AgentInfo.model_validate_json(client.hget(names.AGENTS_HASH, "a1") or b"").pid == 300


def test_a_live_process_on_the_same_host_keeps_its_id(client: redis.Redis) -> None:
    claim(client, info(pid=os.getpid()), new_token("h1", os.getpid()), TTL_S)
    with pytest.raises(Refused):
        claim(client, info(pid=dead_pid()), new_token("h1", 1), TTL_S)


def test_the_id_is_free_again_once_the_holders_key_expires(client: redis.Redis) -> None:
    claim(client, info(host="h1"), new_token("h1", 100), 0.2)
    wait_for(lambda: not client.exists(names.agent_alive_key("a1")), 5, "the key to expire")
    claim(client, info(host="h2", pid=200), new_token("h2", 200), TTL_S)


def test_only_the_holder_renews_and_releases_the_id(client: redis.Redis) -> None:
    mine, theirs = new_token("h1", 100), new_token("h2", 200)
    keys = [names.agent_alive_key("a1"), names.AGENTS_HASH]
    claim(client, info(), mine, TTL_S)

    assert client.eval(RENEW, 2, *keys, mine, 30000, "a1", info().model_dump_json()) == 1
    assert client.eval(RENEW, 2, *keys, theirs, 30000, "a1", info(host="h2").model_dump_json()) == 0
    assert client.eval(RELEASE, 2, *keys, theirs, "a1", info(host="h2").model_dump_json()) == 0
    assert client.get(keys[0]) == mine.encode()
    assert client.eval(RELEASE, 2, *keys, mine, "a1", info().model_dump_json()) == 1
    assert client.get(keys[0]) is None


def test_a_renewal_takes_the_key_back_after_redis_lost_it(client: redis.Redis) -> None:
    mine = new_token("h1", 100)
    keys = [names.agent_alive_key("a1"), names.AGENTS_HASH]
    claim(client, info(), mine, TTL_S)
    client.delete(keys[0])

    assert client.eval(RENEW, 2, *keys, mine, 30000, "a1", info().model_dump_json()) == 1
    assert client.get(keys[0]) == mine.encode()


def test_forget_removes_a_gone_agent_and_refuses_a_live_or_unknown_one(client: redis.Redis) -> None:
    claim(client, info(), new_token("h1", 100), TTL_S)
    with pytest.raises(Refused, match="agent a1 is alive"):
        forget(client, "a1")

    client.delete(names.agent_alive_key("a1"))
    forget(client, "a1")

    assert list_agents(client, {}) == []
    with pytest.raises(NotFound, match="no agent a1"):
        forget(client, "a1")


def test_a_heartbeat_that_finds_its_id_taken_by_another_run_stops_and_leaves_that_runs_record(
    redis_server: LocalRedis, client: redis.Redis
) -> None:
    mine, theirs = new_token("h1", 100), new_token("h2", 200)
    claim(client, info(), mine, TTL_S)
    heartbeat = Heartbeat(redis_server.url, info(), 1.0, TTL_S, Link(3), mine)
    displaced: list[bool] = []
    heartbeat.on_displaced = lambda: displaced.append(True)
    heartbeat.tick()
    assert not displaced

    client.delete(names.agent_alive_key("a1"))  # this run was silent past its TTL, and another took the id
    claim(client, info(host="h2", pid=200), theirs, TTL_S)
    heartbeat.tick()
    heartbeat.stop()

    assert displaced == [True]
    assert client.get(names.agent_alive_key("a1")) == theirs.encode()
    assert AgentInfo.model_validate_json(client.hget(names.AGENTS_HASH, "a1") or b"").host == "h2"
    heartbeat.client.close()

"""Each agent's own Redis user on a real Redis: its role's queue and its own, nothing of another role's.

That a real agent runs with the user its admission grants it, and stops once revoked, is shown end to end
in test_admission.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common import names
from common.localredis import LocalRedis
from engine import acl


@pytest.fixture
def admin(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    for user in client.acl_users():
        name = user.decode() if isinstance(user, bytes) else str(user)
        if name.startswith(acl.USER_PREFIX):
            client.acl_deluser(name)
    client.close()


def as_agent(redis_server: LocalRedis, admin: redis.Redis, agent_id: str, roles: list[str]) -> redis.Redis:
    password = acl.grant(admin, agent_id, roles)
    return redis.Redis.from_url(acl.url_for(redis_server.url, agent_id, password))


def test_an_agent_of_role_a_cannot_read_or_write_role_bs_queue(
    redis_server: LocalRedis, admin: redis.Redis
) -> None:
    admin.rpush(names.role_queue("beta"), "a step of beta")
    admin.hset("unacked.b-1", "tag", "a step of beta in flight")
    alpha = as_agent(redis_server, admin, "a-1", ["alpha"])

    alpha.rpush(names.role_queue("alpha"), "x")
    assert alpha.brpop([names.role_queue("alpha")], timeout=1) == (b"converge.role.alpha", b"x")
    alpha.xadd(names.STATUS_STREAM, {"e": "{}"})
    denied = [
        lambda: alpha.lrange(names.role_queue("beta"), 0, -1),
        lambda: alpha.brpop([names.role_queue("beta")], timeout=1),
        lambda: alpha.rpush(names.role_queue("beta"), "forged"),
        lambda: alpha.lrange(names.agent_queue("b-1"), 0, -1),
        lambda: alpha.hgetall("unacked.b-1"),
        lambda: alpha.set(names.leader_key("beta"), "a-1"),
        lambda: alpha.keys("*"),
        lambda: alpha.execute_command("ACL", "LIST"),
        lambda: alpha.flushall(),
    ]
    for call in denied:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    assert admin.lrange(names.role_queue("beta"), 0, -1) == [b"a step of beta"]

"""Each agent's own Redis user on a real Redis: its role's queue and its own, nothing of another role's.

A real agent runs with the user the engine grants it (through the same scripts, queues and Celery worker
as always), and once the user is revoked it can no longer reach Redis at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common import names
from common.localredis import LocalRedis
from engine import acl
from tests.integration.conftest import Cluster, desired_state, wait_for


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


def test_an_agent_runs_with_its_own_user_and_is_cut_off_when_it_is_revoked(
    cluster: Cluster, redis_server: LocalRedis, admin: redis.Redis, tmp_path: Path
) -> None:
    password = acl.grant(admin, "web-1", ["web"])
    engine_url = cluster.env["CONVERGE_BROKER_URL"]
    cluster.env["CONVERGE_BROKER_URL"] = acl.url_for(engine_url, "web-1", password)
    try:
        cluster.start_agent("web", agent_id="web-1")
    finally:
        cluster.env["CONVERGE_BROKER_URL"] = engine_url
    desired = cluster.write(
        "acl.yaml",
        desired_state(
            "acl", f"  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/f, content: x}}}}\n"
        ),
    )

    applied = cluster.apply(desired)

    assert applied["exit_code"] == 0, applied
    assert (tmp_path / "f").read_text() == "x"
    log = (cluster.logs / "agent-web-1.log").read_text()
    assert "NOPERM" not in log and "no permissions" not in log, log

    acl.revoke(admin, "web-1")

    wait_for(lambda: cluster.agent_state("web-1") == "unavailable", 30, "the revoked agent to be unavailable")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(acl.url_for(engine_url, "web-1", password)).ping()

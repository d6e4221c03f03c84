"""The agents' Redis users on every data node behind Sentinel (engine.acl_mirror), on real nodes.

Redis does not replicate ACL SETUSER: a user the engine makes on the primary is on the primary alone until
the engine copies it. The copy takes `ACL LIST`'s password hash, so the agent logs in on the replica with
the password it was given, and a revocation deletes the copies too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.redisclient import data_nodes
from engine import acl, acl_mirror
from tests.chaos.sentinels import HOST, Sentinels
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.chaos


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    with Sentinels(tmp_path / "redis", "admin") as started:
        yield started


def logs_in(port: int, agent_id: str, password: str) -> bool:
    client = redis.Redis(host=HOST, port=port, username=acl.user_name(agent_id), password=password)
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return False
    finally:
        client.close()


def test_an_agents_user_is_copied_to_the_replica_where_its_password_works_and_a_revocation_deletes_it(
    sentinels: Sentinels,
) -> None:
    primary = sentinels.node(sentinels.primary_port)
    assert data_nodes(sentinels.url) == [(HOST, sentinels.primary_port), (HOST, sentinels.replica_port)]
    password = acl.grant(primary, "web-1", ["web"])
    assert not logs_in(sentinels.replica_port, "web-1", password), "Redis replicated ACL SETUSER after all"

    done = acl_mirror.mirror(sentinels.url)

    assert done == {f"{HOST}:{sentinels.replica_port}": "1 set, 0 deleted"}
    assert logs_in(sentinels.replica_port, "web-1", password)
    with sentinels.node(sentinels.replica_port) as replica:
        assert (
            replica.acl_getuser(acl.user_name("web-1"))["keys"]
            == primary.acl_getuser(acl.user_name("web-1"))["keys"]
        )
    assert acl_mirror.mirror(sentinels.url) == {f"{HOST}:{sentinels.replica_port}": "0 set, 0 deleted"}

    acl.revoke(primary, "web-1")
    acl_mirror.mirror(sentinels.url)

    assert not logs_in(sentinels.replica_port, "web-1", password)
    with sentinels.node(sentinels.replica_port) as replica:
        assert acl.user_name("web-1") not in {str(u) for u in replica.acl_users()}
    primary.close()


def test_a_replica_down_at_a_grant_is_skipped_and_catches_up_at_the_next_pass(sentinels: Sentinels) -> None:
    primary = sentinels.node(sentinels.primary_port)
    sentinels.kill("replica")  # before the sentinels mark it down: still listed, and not reached
    password = acl.grant(primary, "web-2", ["web"])

    acl_mirror.mirror_now(sentinels.url)  # logs, does not raise

    sentinels.start_replica()  # the sentinels list it again once it answers them: the duty's passes
    wait_for(
        lambda: acl_mirror.mirror(sentinels.url) and logs_in(sentinels.replica_port, "web-2", password),
        15,
        "a pass to copy the user to the replica that is back",
    )
    primary.close()

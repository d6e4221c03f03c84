"""The rules of an agent's Redis user, alone: its roles' queues and its own, never another role's."""

from __future__ import annotations

from fnmatch import fnmatchcase

from engine.acl import agent_keys, url_for


def test_an_agent_may_touch_its_roles_queues_and_its_own_and_no_other_queue() -> None:
    keys = set(agent_keys("web-1", ["web", "db"]))

    assert {"converge.role.web", "converge.role.db", "converge.agent.web-1"} <= keys
    assert "converge.role.web\x06\x16*" in keys, "kombu's priority lists of the queue"
    others = [
        "converge.role.api",
        "converge.role.webapp",
        "converge.role.api\x06\x169",
        "converge.agent.web-2",
    ]
    for other in [*others, "unacked", "unacked.web-2", "converge:leader:api", "converge:epoch:api"]:
        assert not any(fnmatchcase(other, key) for key in keys), other
    assert {"unacked.web-1", "unacked_index.web-1", "unacked_mutex.web-1"} <= keys
    assert "unacked" not in keys, "kombu's shared unacked hash would show every agent's steps in flight"


def test_an_agents_broker_url_is_the_engines_with_its_own_user() -> None:
    assert (
        url_for("redis://:admin@10.0.0.5:6379/0", "web-1", "pw")
        == "redis://converge-agent-web-1:pw@10.0.0.5:6379/0"
    )
    assert url_for("rediss://h:6380/2", "a", "pw") == "rediss://converge-agent-a:pw@h:6380/2"

"""The engine's list of agents, read from their announcements on a fake Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import fakeredis
import pytest

from common import names
from common.models import AgentInfo
from engine.fleet import list_agents


def announce(client: fakeredis.FakeRedis, agent_id: str) -> None:
    now = datetime.now(UTC)
    info = AgentInfo(
        id=agent_id, roles=["web"], host="h", pid=1, version="0", throttle=20, started_at=now, last_seen=now
    )
    client.hset(names.AGENTS_HASH, agent_id, info.model_dump_json())
    client.set(names.agent_alive_key(agent_id), 1)


@pytest.mark.parametrize("record", [b"not json", b"[]", b'{"id": "broken"}'], ids=["text", "list", "partial"])
def test_one_malformed_agent_record_is_skipped_and_logged_and_the_others_are_listed(
    caplog: pytest.LogCaptureFixture, record: bytes
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    announce(client, "web-1")
    client.hset(names.AGENTS_HASH, "broken", record)
    announce(client, "web-2")
    client.set(names.leader_key("web"), names.lease_holder("web-2", "run"))
    client.set(names.epoch_key("web"), 4)

    agents = list_agents(client, {"web-2": 3})

    assert [(a.id, a.state, a.running) for a in agents] == [("web-1", "backup", 0), ("web-2", "active", 3)]
    assert (agents[1].leader_of, agents[1].epochs) == (["web"], {"web": 4})
    assert "skipping the malformed record of agent 'broken'" in caplog.text

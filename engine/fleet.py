"""What the engine knows of its agents: their announcements and heartbeats on Redis."""

from __future__ import annotations

import redis

from common import names
from common.models import AgentInfo, AgentView


def list_agents(client: redis.Redis, running: dict[str, int]) -> list[AgentView]:
    """Every agent that ever announced itself; `unavailable` once its heartbeat key has expired."""
    infos = [AgentInfo.model_validate_json(raw) for raw in client.hvals(names.AGENTS_HASH)]
    infos.sort(key=lambda info: info.id)
    pipe = client.pipeline()
    for info in infos:
        pipe.exists(names.agent_alive_key(info.id))
    alive = pipe.execute()
    return [
        AgentView(
            id=info.id,
            roles=info.roles,
            state="active" if is_alive else "unavailable",
            # No election yet: every live agent consumes its role queues, and none leads them alone.
            leader_of=[],
            last_seen=info.last_seen,
            running=running.get(info.id, 0),
            host=info.host,
            pid=info.pid,
            version=info.version,
            throttle=info.throttle,
            step_timeout_s=info.step_timeout_s,
        )
        for info, is_alive in zip(infos, alive, strict=True)
    ]

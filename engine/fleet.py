"""What the engine knows of its agents: their announcements and heartbeats on Redis."""

from __future__ import annotations

import logging

import redis
from pydantic import ValidationError

from common import names
from common.models import AgentInfo, AgentView

log = logging.getLogger("converge.engine")


def list_agents(client: redis.Redis, running: dict[str, int]) -> list[AgentView]:
    """Every agent that ever announced itself; `unavailable` once its heartbeat key has expired."""
    infos = read_agents(client)
    infos.sort(key=lambda info: info.id)
    alive = alive_ids(client, {info.id for info in infos})
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
        for info, is_alive in ((info, info.id in alive) for info in infos)
    ]


def alive_ids(client: redis.Redis, agent_ids: set[str]) -> set[str]:
    """Those of `agent_ids` whose heartbeat key has not expired."""
    ids = sorted(agent_ids)
    pipe = client.pipeline(transaction=False)
    for agent_id in ids:
        pipe.exists(names.agent_alive_key(agent_id))
    return {agent_id for agent_id, found in zip(ids, pipe.execute(), strict=True) if found}


def read_agents(client: redis.Redis, reported: set[bytes | str] | None = None) -> list[AgentInfo]:
    """The agents' announcements; one that cannot be read is skipped and logged, not fatal to the list.

    A caller that reads often passes `reported`, to log each bad record once rather than on every read.
    """
    infos = []
    for field, raw in client.hgetall(names.AGENTS_HASH).items():
        try:
            infos.append(AgentInfo.model_validate_json(raw))
        except ValidationError as exc:
            if reported is not None:
                if raw in reported:
                    continue
                reported.add(raw)
            name = field.decode(errors="replace") if isinstance(field, bytes) else str(field)
            first = exc.errors()[0]
            log.warning(
                "skipping the malformed record of agent %r in %s (%s: %s); a live agent writes it again "
                "with its next heartbeat, else remove it with HDEL %s %s",
                name,
                names.AGENTS_HASH,
                ".".join(map(str, first["loc"])) or "record",
                first["msg"],
                names.AGENTS_HASH,
                name,
            )
    return infos

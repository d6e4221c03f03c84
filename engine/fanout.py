"""The live agents of the roles that `scope: each` resources fan out to, as plain data for the planner."""

from __future__ import annotations

import redis

from engine import fleet


def agents_by_role(client: redis.Redis, roles: set[str]) -> dict[str, list[str]]:
    """role -> the ids of its live agents (heartbeat key not expired), for each of `roles`.

    No roles, no lookup: a desired state without `scope: each` costs nothing more to plan.
    """
    if not roles:
        return {}
    live = fleet.live_agents(client)
    return {role: sorted(info.id for info in live if role in info.roles) for role in roles}

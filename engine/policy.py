"""Policies on the engine (the seed's group policy): agent settings set for every agent of a role.

An admin sets and unsets them (`converge policy`); every agent of the role fetches its policy at
`GET /v1/agent/policy` with its own token, every heartbeat interval. What a policy may hold is checked here
by common.policy, the layer the engine shares with the agents: an unknown key, a setting of each host
(`broker_url`, `id`...), a bad value, or heartbeat settings that break their rule together are bad input
(422, exit code 2), and nothing is stored.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from common import policy as rules
from common.errors import BadInput
from common.policy import AgentPolicy, check_role
from common.store.interface import PolicyRecord, Store, TokenRecord
from engine.auth import AGENT_ROUTES

log = logging.getLogger("converge.engine.policy")

POLICIES_ROUTE = "/v1/policies"
AGENT_POLICY_ROUTE = AGENT_ROUTES + "policy"
MAX_ROLES = 64  # of one agent asking for its policy


class PolicyBody(BaseModel):
    values: dict[str, Any]


def current(store: Store, role: str) -> dict[str, Any]:
    return {r.key: r.value for r in store.policies(role)}


def set_values(store: Store, role: str, values: Mapping[str, Any], set_by: str) -> dict[str, Any]:
    """Set keys of a role's policy, all checked first (alone and with the rest of the policy); the whole
    policy after. BadInput, and nothing stored, if one is bad."""
    check_role(role)
    if not values:
        raise BadInput("nothing to set: give KEY=VALUE (`converge policy set --role ROLE throttle=5`)")
    checked = rules.validate(values)
    after = current(store, role) | checked
    rules.check_together(after)
    store.set_policy(role, checked, set_by, time.time())
    log.warning("policy for role %s set by %s: %s", role, set_by, _pairs(checked))
    return after


def unset(store: Store, role: str, keys: list[str], set_by: str) -> tuple[list[str], dict[str, Any]]:
    """Remove keys of a role's policy (every key when none are given): the keys removed, and the policy
    left, which must still keep the heartbeat rule."""
    check_role(role)
    for key in keys:
        rules.check_key(key)
    before = current(store, role)
    left = {k: v for k, v in before.items() if keys and k not in keys}
    rules.check_together(left)
    removed = store.unset_policy(role, keys or None)
    if removed:
        log.warning("policy for role %s: %s unset by %s", role, ", ".join(removed), set_by)
    return removed, left


def for_agent(store: Store, agent_id: str, roles: list[str]) -> AgentPolicy:
    """The policy of the agent `agent_id` of `roles` (in its order: the first role wins a key two set).
    An enrolled agent gets only the policies of the roles it was admitted for."""
    if len(roles) > MAX_ROLES:
        raise BadInput(f"more than {MAX_ROLES} roles")
    for role in roles:
        check_role(role)
    enrollment = store.enrollment(agent_id)
    if enrollment is not None:
        foreign = [role for role in roles if role not in enrollment.roles]
        if foreign:
            raise HTTPException(
                403,
                f"agent {agent_id} was admitted for the roles {', '.join(enrollment.roles)}, not "
                f"{', '.join(foreign)}: it gets no policy of theirs",
            )
    by_role: dict[str, dict[str, Any]] = defaultdict(dict)
    for record in store.policies():
        if record.role in roles:
            by_role[record.role][record.key] = record.value
    return rules.merge(by_role, roles)


def record_json(record: PolicyRecord) -> dict[str, Any]:
    """A policy key as the API and `converge policy show --json` give it; the time in ISO 8601."""
    at = datetime.fromtimestamp(record.set_at, UTC).isoformat()
    return {
        "role": record.role,
        "key": record.key,
        "value": record.value,
        "set_by": record.set_by,
        "set_at": at,
    }


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def install_routes(api: FastAPI, store: Store) -> None:
    """The admins' policy routes (engine.auth: GET for viewers, changes for admins) and the agents' one."""

    @api.get(POLICIES_ROUTE)
    def policies(role: str | None = None) -> dict[str, Any]:
        if role is not None:
            check_role(role)
        return {"policies": [record_json(r) for r in store.policies(role)]}

    @api.put(POLICIES_ROUTE + "/{role}")
    def set_policy(role: str, body: PolicyBody, request: Request) -> dict[str, Any]:
        caller: TokenRecord = request.state.caller
        return {"role": role, "policy": set_values(store, role, body.values, caller.name)}

    @api.delete(POLICIES_ROUTE + "/{role}")
    def unset_policy(
        role: str, request: Request, key: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, Any]:
        caller: TokenRecord = request.state.caller
        removed, left = unset(store, role, key or [], caller.name)
        return {"role": role, "removed": removed, "policy": left}

    @api.get(AGENT_POLICY_ROUTE)
    def agent_policy(request: Request, role: Annotated[list[str] | None, Query()] = None) -> AgentPolicy:
        caller: TokenRecord = request.state.caller
        return for_agent(store, caller.name, role or [])

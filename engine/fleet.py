"""What the engine knows of its agents: their announcements and heartbeats on Redis."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import redis
from pydantic import ValidationError

from common import names
from common.errors import NotFound, Refused
from common.models import AgentInfo, AgentState, AgentView, StepState, WorkflowView
from common.store.interface import EnrollmentRecord

log = logging.getLogger("converge.engine")


def list_agents(
    client: redis.Redis, running: dict[str, int], enrollments: Iterable[EnrollmentRecord] = ()
) -> list[AgentView]:
    """Every agent that ever announced itself or enrolled: `active` while it leads a role, `backup` while it
    is alive and leads none, `unavailable` once its heartbeat key has expired or it was revoked; `pending`
    or `denied` while it waits for the operator, or was turned away (engine.admission)."""
    infos = read_agents(client)
    alive = alive_ids(client, {info.id for info in infos})
    led = leaders(client, sorted({role for info in infos for role in info.roles}))
    decided = {record.id: record for record in enrollments}
    views = {}
    for info in infos:
        epochs = {
            role: epoch for role, (agent, epoch) in led.items() if agent == info.id and role in info.roles
        }
        state: AgentState = "unavailable" if info.id not in alive else "active" if epochs else "backup"
        record = decided.get(info.id)
        if record is not None and record.state == "revoked":
            state, epochs = "unavailable", {}
        views[info.id] = _view(info, state, epochs, running.get(info.id, 0), record)
    for record in decided.values():
        if record.id not in views:
            views[record.id] = _enrolled_view(record)
    return [views[agent_id] for agent_id in sorted(views)]


def leaders(client: redis.Redis, roles: list[str]) -> dict[str, tuple[str | None, int]]:
    """Who leads each role (an agent id, or None while nobody does) and the role's fencing epoch."""
    if not roles:
        return {}
    pipe = client.pipeline(transaction=False)
    for role in roles:
        pipe.get(names.leader_key(role))
        pipe.get(names.epoch_key(role))
    found = pipe.execute()
    return {
        role: (names.lease_agent(found[2 * i]), int(found[2 * i + 1] or 0)) for i, role in enumerate(roles)
    }


def _view(
    info: AgentInfo, state: AgentState, epochs: dict[str, int], running: int, record: EnrollmentRecord | None
) -> AgentView:
    return AgentView(
        id=info.id,
        roles=info.roles,
        state=state,
        leader_of=sorted(epochs),
        epochs=epochs,
        last_seen=info.last_seen,
        running=running,
        host=info.host,
        pid=info.pid,
        version=info.version,
        throttle=info.throttle,
        step_timeout_s=info.step_timeout_s,
        admission=record.state if record else None,
        extension_problems=info.extension_problems,
    )


def _enrolled_view(record: EnrollmentRecord) -> AgentView:
    """An agent that enrolled and never ran (it waits, or was turned away): what it told of itself."""
    facts = record.capabilities
    state: AgentState = record.state if record.state in ("pending", "denied") else "unavailable"
    return AgentView(
        id=record.id,
        roles=record.roles,
        state=state,
        leader_of=[],
        last_seen=datetime.fromtimestamp(record.last_seen_at, UTC),
        running=0,
        host=str(facts.get("hostname", "?")),
        pid=0,
        version=str(facts.get("converge_version", "?")),
        admission=record.state,
    )


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


def live_agents(client: redis.Redis) -> list[AgentInfo]:
    """The announced agents whose heartbeat has not expired."""
    infos = read_agents(client)
    if not infos:
        return []
    alive = alive_ids(client, {info.id for info in infos})
    return [info for info in infos if info.id in alive]


def unserved(steps: Iterable[tuple[str, str | None]], live: Iterable[AgentInfo]) -> list[str]:
    """A warning for each role (or scoped agent) of `steps` (role, scope) that no live agent serves."""
    live = list(live)
    roles = {role for info in live for role in info.roles}
    ids = {info.id for info in live}
    waiting: Counter[tuple[str, str | None]] = Counter(
        (role, scope) for role, scope in steps if (scope not in ids if scope else role not in roles)
    )
    warnings = []
    for (role, scope), count in sorted(waiting.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        steps_wait = f"{count} step{'s' if count > 1 else ''} wait{'s' if count == 1 else ''}"
        if scope:
            warnings.append(
                f"agent {scope} (scope of role {role}) is not alive: {steps_wait} for it, held by the engine "
                f"until it is (`converge-agent run --id {scope} --role {role}`)"
            )
        else:
            warnings.append(
                f"no live agent has role {role}: {steps_wait} in its queue until one starts "
                f"(`converge-agent run --role {role}`)"
            )
    return warnings


def waiting_note(role: str, scope: str | None = None) -> str:
    if scope:
        return f"waiting for agent {scope}, which is not alive (the engine holds its steps until it is)"
    return f"waiting for an agent of role {role}"


def note_waiting(view: WorkflowView, live: Iterable[AgentInfo]) -> WorkflowView:
    """The view with each queued step that no live agent can take saying what it waits for: an agent of
    its role, or the agent it is pinned to."""
    live = list(live)
    roles = {role for info in live for role in info.roles}
    ids = {info.id for info in live}
    for step in view.steps or []:
        if step.state == StepState.QUEUED and (
            step.scope not in ids if step.scope else step.role not in roles
        ):
            note = waiting_note(step.role, step.scope)
            step.message = f"{note}; {step.message}" if step.message else note
    return view


# KEYS: the agent's alive key, the announcements hash. ARGV: the agent id. Atomic: an agent that comes
# back between a check and a delete cannot lose its announcement.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return redis.call('HDEL', KEYS[2], ARGV[1])
"""


def forget(client: redis.Redis, agent_id: str) -> None:
    """Remove the announcement of an agent that is gone for good. Refused while it is alive."""
    found = client.eval(_FORGET, 2, names.agent_alive_key(agent_id), names.AGENTS_HASH, agent_id)
    if found == -1:
        ttl_s = max(0, client.pttl(names.agent_alive_key(agent_id))) / 1000
        raise Refused(
            f"agent {agent_id} is alive, or was a moment ago (its heartbeat expires in {ttl_s:.0f}s unless "
            f"renewed): stop it first (SIGTERM signs it off at once), or if it is gone wait {ttl_s:.0f}s; "
            "then forget it"
        )
    if not found:
        raise NotFound(f"no agent {agent_id}: `converge agents list` shows the known ones")

"""Every queue, task and Redis key name Converge uses, in one place.

Celery creates missing queues silently, so a misspelled role queue is a black hole: nothing else in the
code base builds these strings.
"""

from __future__ import annotations

import re

# A name an operator gives a token, a credential or an import source: up to 64 letters, digits, `.`, `_`
# or `-`, starting with a letter or digit.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

STEP_TASK = "converge.step"
ENGINE_QUEUE = "converge.engine"
STATUS_STREAM = "converge:status"
STATUS_GROUP = "engine"
# Status entries the engine could not record (malformed, or refused by the store N times), with the error.
DEAD_LETTER_STREAM = "converge:status:dead"
AGENTS_HASH = "converge:agents"
# Status events refused by the engine's ingester (unsigned, forged, from an agent that does not hold the
# attempt), counted by reason.
EVENTS_REFUSED = "converge:status:refused"
# The fields of a status stream entry: the event (JSON) and its agent's MAC over exactly those bytes.
EVENT_FIELD = "e"
MAC_FIELD = "s"
# Set by the engine; gone means Redis lost its data (a restart without persistence), queued steps too.
BROKER_MARK = "converge:broker-mark"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def valid_name(value: str) -> bool:
    """Role names, scopes and agent ids become queue names: keep them to a safe alphabet."""
    return bool(_NAME.match(value))


def role_queue(role: str, scope: str | None = None) -> str:
    """The queue consumed by the (active) agent of a role, or of a role's scope."""
    return f"converge.role.{role}" if scope is None else f"converge.role.{role}.{scope}"


def agent_queue(agent_id: str) -> str:
    """The queue of one agent: steps pinned to that host with `scope`."""
    return f"converge.agent.{agent_id}"


def agent_alive_key(agent_id: str) -> str:
    """Set with a TTL by the agent's heartbeat: while it exists, the agent is alive."""
    return f"converge:agent:{agent_id}:alive"


def agent_refused_key(agent_id: str) -> str:
    """A hash counting, by reason, the deliveries an agent refused to run (unsigned, forged)."""
    return f"converge:agent:{agent_id}:refused"


def agent_event_key(agent_id: str) -> str:
    """The key a trusted agent (one that was not enrolled) signs its status events with, put there by the
    agent itself; the Redis users of enrolled agents cannot read or write it (engine.acl)."""
    return f"converge:agentkey:{agent_id}"


def plan_reply_key(plan_id: str) -> str:
    """The list where agents push the observations of a `plan` (check-mode) request."""
    return f"converge:plan:{plan_id}"


def claim_key(step_id: str, attempt: int) -> str:
    """Set once by the agent that starts a step attempt: a second delivery of it is dropped."""
    return f"converge:claim:{step_id}:{attempt}"


def cancel_key(step_id: str, attempt: int) -> str:
    """Set by the engine to stop a step attempt (cancel, abort); the agent running it kills it."""
    return f"converge:cancel:{step_id}:{attempt}"


def attempt_key(step_id: str) -> str:
    """The current attempt of a step that was retried: deliveries of older attempts are dropped."""
    return f"converge:attempt:{step_id}"


def leader_key(role: str) -> str:
    """A role's leadership lease: its value names the holder (`lease_holder`), its TTL is the lease."""
    return f"converge:leader:{role}"


def epoch_key(role: str) -> str:
    """A role's fencing epoch: incremented each time its lease changes hands."""
    return f"converge:epoch:{role}"


def duties_lease_key(duty: str) -> str:
    """The lease of an engine's singleton duty (engine.duties): apart from the agents' role leases, so
    that no role name, not even `engine`, can collide with it."""
    return f"converge:engine:lease:{duty}"


def duties_epoch_key(duty: str) -> str:
    """The fencing epoch of an engine duty's lease: incremented each time another engine takes it."""
    return f"converge:engine:epoch:{duty}"


ENGINES_ALIVE = "converge:engines"
"""The engines alive: a sorted set of their runs ("ID/RUN"), each scored with when it expires."""


def lease_holder(agent_id: str, run: str) -> str:
    """A lease's value: the agent id (what `agents list` shows) and its run (what makes it unique)."""
    return f"{agent_id}/{run}"


def lease_agent(holder: str | bytes | None) -> str | None:
    """The agent id in a lease's value."""
    if holder is None:
        return None
    text = holder.decode() if isinstance(holder, bytes) else holder
    return text.split("/", 1)[0]


def unacked_keys(agent_id: str) -> dict[str, str]:
    """kombu's transport options naming the keys where an agent keeps the messages it took and has not
    acknowledged: one set per agent, so that its Redis user can be kept from reading another's."""
    return {
        "unacked_key": f"unacked.{agent_id}",
        "unacked_index_key": f"unacked_index.{agent_id}",
        "unacked_mutex_key": f"unacked_mutex.{agent_id}",
    }

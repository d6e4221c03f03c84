"""Whose status events the engine records: each agent's MAC key, and the roles it may report on.

Every status event carries its agent's MAC over its exact bytes (common.signing). The key of an enrolled
agent is derived from the engine's secret (CONVERGE_HOME/keys/events.key), its id and the public key it
enrolled with, and handed to it once admitted: the engine keeps nothing more, and answers only for an
agent that is admitted now, with its admitted roles. An agent that was never enrolled (one on the engine's
own host, given the broker's own credentials) is trusted with every role; it makes its
own key and puts it in Redis (common.names.agent_event_key), where no enrolled agent's user can read or
write. An id that enrolled is never looked up there.

Lookups are cached for CACHE_S; the operator's decisions (engine.admission) forget the agent at once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import redis

from common import names, signing
from common.lifecycle import ANY_ROLE, Roles
from common.store.interface import Store

log = logging.getLogger("converge.engine")

SECRET_FILE = Path("keys/events.key")  # under CONVERGE_HOME
CACHE_S = 5.0
_PURPOSE = "converge status events"


@dataclass(frozen=True)
class Refusal:
    """Why an agent's events are refused: a short reason (what is counted) and what to tell."""

    reason: str
    message: str


@dataclass(frozen=True)
class Grant:
    """What the engine holds for an agent that may write status events."""

    key: bytes
    roles: Roles  # ANY_ROLE for a trusted agent


class EventKeys:
    def __init__(self, secret: bytes, store: Store, client: redis.Redis, cache_s: float = CACHE_S) -> None:
        self.secret = secret
        self.store = store
        self.client = client
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Grant | Refusal]] = {}
        self._lock = threading.Lock()

    @classmethod
    def under(cls, home: Path, store: Store, client: redis.Redis) -> EventKeys:
        return cls(signing.load_or_create_secret(home / SECRET_FILE), store, client)

    def issue(self, agent_id: str, public_key: str) -> bytes:
        """The key of an enrolled agent, for the answer that admits it."""
        return signing.derive_key(self.secret, _PURPOSE, agent_id, public_key)

    def grant(self, agent_id: str) -> Grant | Refusal:
        """The agent's key and roles, or why its events are refused."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(agent_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._look_up(agent_id)
        with self._lock:
            self._cache[agent_id] = (now + self.cache_s, found)
        return found

    def forget(self, agent_id: str) -> None:
        with self._lock:
            self._cache.pop(agent_id, None)

    def _look_up(self, agent_id: str) -> Grant | Refusal:
        record = self.store.enrollment(agent_id)
        if record is not None:
            if record.state != "admitted":
                return Refusal("not admitted", f"agent {agent_id} is {record.state}, not admitted")
            return Grant(self.issue(agent_id, record.public_key), frozenset(record.roles))
        raw = self.client.get(names.agent_event_key(agent_id))
        if raw is None:
            return Refusal("unknown agent", f"agent {agent_id} has neither enrolled nor registered a key")
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return Refusal("unknown agent", f"agent {agent_id}'s registered key is not base64")
        return Grant(key, ANY_ROLE)


Lookup = Callable[[str], "Grant | Refusal"]


def authenticate(
    events: Iterable[tuple[str, bytes, bytes | None]], lookup: Lookup
) -> tuple[dict[str, Roles], dict[int, Refusal]]:
    """Check each event's MAC against its agent's key: events as (agent, event bytes, MAC).

    Returns the roles of each agent whose events verified, and, by position, why the others are refused.
    """
    grants: dict[str, Grant | Refusal] = {}
    roles: dict[str, Roles] = {}
    refused: dict[int, Refusal] = {}
    for i, (agent, raw, tag) in enumerate(events):
        if agent not in grants:
            grants[agent] = lookup(agent)
        grant = grants[agent]
        if isinstance(grant, Refusal):
            refused[i] = grant
        elif not tag:
            refused[i] = Refusal("unsigned", f"it is not signed, and names agent {agent}")
        elif not signing.mac_verifies(grant.key, raw, tag):
            refused[i] = Refusal("forged", f"its MAC does not verify against agent {agent}'s key")
        else:
            roles[agent] = grant.roles
    return roles, refused

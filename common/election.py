"""Leadership of a role: one agent at a time takes a role's steps, under a fencing epoch.

The same leases elect the engine that holds the singleton duties (engine.duties), under keys of its own.

Each role has a lease in Redis (`converge:leader:<role>`), taken with NX and a TTL, renewed and released only
by its holder, through Lua scripts that read and write in one step. Taking a free lease increments the
role's epoch (`converge:epoch:<role>`): the fencing token that tells the work of one leadership from the next.

A holder believes it leads only until `renew_deadline_s` after its last successful renewal, shorter than the
lease's TTL: by the time another agent can take the lease, the old holder has stopped believing it leads.
That holds across a paused process too (SIGSTOP, a long GC, a VM freeze): the deadline is measured on the
holder's own monotonic clock when it wakes, before it acts (Kleppmann's critique of lease-based locks is
why the epoch exists at all: whatever acts on a leadership carries its epoch, and stale epochs are refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from common import names

# KEYS: the lease, the epoch. ARGV: the holder, the TTL in ms.
# Returns {1 if the caller holds the lease now, the epoch, the holder, the lease's remaining ms}.
_CAMPAIGN = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0'), holder, tonumber(ARGV[2])}
end
if holder then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0'), holder, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('INCR', KEYS[2]), ARGV[1], tonumber(ARGV[2])}
"""
# KEYS: the lease. ARGV: the holder. Deletes the lease only if the caller holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Standing:
    """What one campaign says of a role: whether this agent leads it, at which epoch, and who holds it."""

    role: str
    leader: bool
    epoch: int
    holder: str | None
    remaining_s: float  # until the lease expires, as Redis counts it


class Election:
    """The roles one agent campaigns for. Not thread-safe: one thread campaigns (the agent's elector)."""

    def __init__(
        self,
        client: redis.Redis,
        roles: list[str],
        holder: str,
        ttl_s: float,
        renew_deadline_s: float,
        *,
        lease_key: Callable[[str], str] = names.leader_key,
        epoch_key: Callable[[str], str] = names.epoch_key,
    ) -> None:
        if not 0 < renew_deadline_s < ttl_s:
            raise ValueError("the renew deadline must be shorter than the lease's TTL")
        self.client = client
        self.roles = sorted(set(roles))
        self.holder = holder
        self.ttl_s = ttl_s
        self.renew_deadline_s = renew_deadline_s
        self.lease_key = lease_key
        self.epoch_key = epoch_key
        self._campaign = client.register_script(_CAMPAIGN)
        self._release = client.register_script(_RELEASE)
        self._renewed: dict[str, float] = {}  # role -> monotonic time of the last renewal that took
        self._epochs: dict[str, int] = {}

    def campaign(self) -> dict[str, Standing]:
        """Take or renew every role's lease. Raises redis.RedisError when Redis cannot be reached; the
        roles led so far are then led until their renew deadline (see `leading`)."""
        standings = {}
        for role in self.roles:
            asked = time.monotonic()
            keys = [self.lease_key(role), self.epoch_key(role)]
            took, epoch, holder, remaining_ms = self._campaign(
                keys=keys, args=[self.holder, int(self.ttl_s * 1000)]
            )
            holder_text = holder.decode() if isinstance(holder, bytes) else str(holder)
            if took:
                self._renewed[role] = asked  # the lease runs from no earlier than the question
                self._epochs[role] = int(epoch)
            else:
                self._renewed.pop(role, None)
                self._epochs.pop(role, None)
            standings[role] = Standing(role, bool(took), int(epoch), holder_text, max(0, remaining_ms) / 1000)
        return standings

    def leading(self) -> dict[str, int]:
        """The roles this agent may act as leader of now, with their epochs: those renewed within the
        renew deadline, on this process's own clock."""
        now = time.monotonic()
        return {
            role: self._epochs[role]
            for role, renewed in self._renewed.items()
            if now - renewed < self.renew_deadline_s
        }

    def drop(self, role: str) -> None:
        """Stop campaigning for `role` and give its lease up if this agent holds it (the role was removed
        from the agent's settings). Raises redis.RedisError if Redis cannot be reached: the lease then
        expires by itself, and the role is dropped all the same."""
        self.roles = [r for r in self.roles if r != role]
        held = self._renewed.pop(role, None) is not None
        self._epochs.pop(role, None)
        if held:
            self._release(keys=[self.lease_key(role)], args=[self.holder])

    def add(self, role: str) -> None:
        """Campaign for `role` too from the next campaign on."""
        self.roles = sorted({*self.roles, role})

    def release(self) -> None:
        """Give up every lease this agent holds (a clean stop): a backup takes over at once."""
        for role in list(self._renewed):
            self._release(keys=[self.lease_key(role)], args=[self.holder])
        self._renewed.clear()
        self._epochs.clear()

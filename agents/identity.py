"""An agent's id: its default, and the claim that keeps two live agents from sharing one.

The id names the agent's own queue and its state folder, so two live agents with one id would take each
other's steps and share an outbox. An agent takes its alive key with SET NX, holding a token unique to its
run, in one script that also writes its announcement: of two agents started at once with one id, exactly
one gets it. Its heartbeat renews the key only while the key still holds that token (RENEW below).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass

import redis

from common import names
from common.errors import Refused
from common.models import AgentInfo

MAX_ID = 63  # common.names.valid_name: a letter or digit, then up to 62 of [A-Za-z0-9_.-]
_HASH_CHARS = 8
_OUTSIDE_ALPHABET = re.compile(r"[^A-Za-z0-9_.-]+")

# KEYS: alive key, announcements hash[, event key]. ARGV: token, ttl ms, agent id, announcement, takeover-from
# token[, the agent's status-event key]. Sets the key if it is free (or still holds the token of a dead run
# being taken over); then announces, and a trusted agent (one given KEYS[3]) puts its event key there for the
# engine (engine.eventkeys). Returns "" on success, else the token that holds the key.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[5] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[6]) end
return ''
"""
# KEYS as CLAIM's; ARGV: token, ttl ms, agent id, announcement[, event key] (no takeover). Renews the alive
# key, the announcement (and the event key) while the alive key holds the token, or takes it back if it is
# gone (Redis restarted, or this agent was cut off for longer than the TTL). Returns 1, or 0 when another run
# holds the id: that run's announcement is left alone.
RENEW = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[5]) end
return 1
"""
# KEYS: alive key, announcements hash. ARGV: token, agent id, announcement. Signs off only its own run.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


def default_id(hostname: str, roles: list[str]) -> str:
    """`<hostname>-<role>[-<role>...]`, roles sorted and once each: unique per host and role set.

    Kept to the queue-name alphabet; an id longer than MAX_ID is cut and ends with a short hash of the
    whole, so that two long ids that share their start stay apart.
    """
    parts = (_OUTSIDE_ALPHABET.sub("-", part).strip("-_.") for part in [hostname, *sorted(set(roles))])
    whole = "-".join(part for part in parts if part) or "agent"
    if len(whole) <= MAX_ID:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:_HASH_CHARS]
    return f"{whole[: MAX_ID - _HASH_CHARS - 1].rstrip('-_.')}-{digest}"


def new_token(host: str, pid: int) -> str:
    """A token unique to this run that also says where it runs: `host/pid/random`."""
    return f"{host}/{pid}/{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Holder:
    """The run that holds an id, as its token says."""

    host: str
    pid: int | None
    ttl_s: float | None = None  # the heartbeat TTL it announced


def holder_of(token: str, announced: AgentInfo | None) -> Holder:
    """Who holds an id: from the token; a token of another form (an older agent) from the announcement."""
    host, _, rest = token.partition("/")
    pid, _, _ = rest.partition("/")
    ttl_s = announced.heartbeat_ttl_s if announced is not None else None
    if host and pid.isdigit():
        return Holder(host, int(pid), ttl_s)
    if announced is not None:
        return Holder(announced.host, announced.pid, ttl_s)
    return Holder("an unknown host", None)


def process_is_gone(pid: int) -> bool:
    """Whether no process (other than a zombie) has this pid on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[:1] == ["Z"]
    except OSError:
        return False


def claim(
    client: redis.Redis, info: AgentInfo, token: str, ttl_s: float, event_key: str | None = None
) -> None:
    """Take the id `info.id` for this run, and announce it; Refused while another live run holds it.
    A trusted agent gives its status-event key (base64), kept for the engine while it holds the id.

    A run on this host whose process is gone (a crash, a SIGKILL) is taken over at once, atomically: only
    if the key still holds that run's token. Any other holder keeps the id until its key expires, one
    TTL after its last heartbeat.
    """
    keys = [names.agent_alive_key(info.id), names.AGENTS_HASH]
    args: list[str | int] = [token, int(ttl_s * 1000), info.id, info.model_dump_json()]
    if event_key is not None:
        keys.append(names.agent_event_key(info.id))

    def attempt(takeover: str) -> str:
        extra = [] if event_key is None else [event_key]
        return _text(client.eval(CLAIM, len(keys), *keys, *args, takeover, *extra))

    held = attempt("")
    if not held:
        return
    holder = holder_of(held, _announced(client, info.id))
    if _dead_run_here(holder, info) and not attempt(held):
        return
    remaining_ms = client.pttl(keys[0])
    raise Refused(refusal(info.id, holder, max(0, remaining_ms) / 1000, holder.ttl_s or ttl_s))


def _dead_run_here(holder: Holder, info: AgentInfo) -> bool:
    """Whether the holder ran on this host and its process is gone (or is this very process: a container
    restarted with the same pid)."""
    if holder.host != info.host or holder.pid is None:
        return False
    return holder.pid == info.pid or process_is_gone(holder.pid)


def refusal(agent_id: str, holder: Holder, remaining_s: float, ttl_s: float) -> str:
    """What an agent that may not start says: who holds the id, what to do, and when it frees itself."""
    pid = f"pid {holder.pid}" if holder.pid is not None else "an unknown pid"
    return (
        f"agent id {agent_id!r} is held by a live agent on host {holder.host} ({pid}): stop that agent, "
        f"or give this one another id (--id ID, or `converge-agent config set id=ID`). If that agent is gone "
        f"for good, its id frees itself when its heartbeat expires, in {remaining_s:.0f}s at most (the "
        f"heartbeat TTL, {ttl_s:g}s, after its last beat); then start this one again"
    )


def _announced(client: redis.Redis, agent_id: str) -> AgentInfo | None:
    raw = client.hget(names.AGENTS_HASH, agent_id)
    if raw is None:
        return None
    try:
        return AgentInfo.model_validate_json(raw)
    except ValueError:
        return None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")

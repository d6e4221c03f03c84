"""At engine start: is Redis set never to evict keys? Any other maxmemory-policy may drop queue keys under
memory pressure, and the steps in them are lost without an error."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger("converge.engine")

FIX = "set `maxmemory-policy noeviction` in redis.conf or run `CONFIG SET maxmemory-policy noeviction`"


def eviction_problem(policy: str | None, refused: str | None = None) -> tuple[int, str] | None:
    """The log level and message for Redis's `policy` (None when it could not be read, `refused` saying
    why), or None when it is `noeviction`."""
    if policy is None:
        why = f" ({refused})" if refused else ""
        return logging.INFO, (
            f"could not check Redis's maxmemory-policy{why}: make sure it is noeviction, "
            "or queued steps may be evicted and lost (docs/deployment.md)"
        )
    if policy == "noeviction":
        return None
    return logging.WARNING, (
        f"Redis's maxmemory-policy is {policy!r}, not 'noeviction': under memory pressure Redis may evict "
        f"queue keys and the steps in them are lost without an error; {FIX} (docs/deployment.md)"
    )


def read_policy(client: redis.Redis) -> tuple[str | None, str | None]:
    """Redis's maxmemory-policy, or None and why it could not be read (CONFIG refused by an ACL or a
    managed Redis)."""
    try:
        found = client.config_get("maxmemory-policy")
    except redis.RedisError as exc:
        return None, str(exc).split("\n")[0][:200]
    policy = found.get("maxmemory-policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    return (str(policy), None) if policy else (None, "CONFIG GET returned nothing")


def check_eviction(client: redis.Redis) -> None:
    """Log what `eviction_problem` says about `client`'s Redis."""
    problem = eviction_problem(*read_policy(client))
    if problem:
        log.log(*problem)

"""Redis clients of the agent that fail fast, so that the agent notices a lost connection in time.

redis-py retries a command three times with backoff by default: in a partition one heartbeat could then
take many seconds, and `max_connection_failures` failed beats could outlast the heartbeat TTL that the
engine waits before it runs the agent's steps again. Every client here gives up after one try of at most
`timeout_s`; what must not be lost is kept in the outbox and sent again.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.redisclient import redis_client


def fail_fast(url: str, timeout_s: float, *, single: bool = False) -> redis.Redis:
    """A client whose commands give up after one try of at most `timeout_s`.

    `single`: one connection, held (redis-py's `single_connection_client`), for a client used by one
    thread on a hot path: it skips taking a connection from the pool and checking it for every command,
    a third of a command's cost. A failed command drops the connection, and the next one connects anew.

    On a sentinel URL no address is pinned: the new connection asks the sentinels for the primary again
    (`common.redisclient`), so a client made before a failover follows it after one failed command.
    """
    return redis_client(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single,
    )

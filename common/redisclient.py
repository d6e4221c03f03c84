"""The one way to a `redis.Redis` from a broker URL: redis://, rediss://, unix:// or sentinel://.

A rediss:// URL's TLS parameters (the CA, whether the certificate is checked) are read by
`common.redistls`, as for Celery and kombu, so that every client checks the server the same way.

A sentinel URL gives a client on a `SentinelConnectionPool`, which asks the sentinels for the primary's
address at every new connection. A failover is then followed without anything cached: a command on a
connection to the old primary fails (ConnectionError, or READONLY from a demoted one, which the pool turns
into a ConnectionError), the connection is dropped, and the next one goes where the sentinels say. That
holds with no retry at all (`agents.connection.fail_fast`) and in a forked process, where redis-py's pools
open new connections; and, with `FollowingConnection`, for a client that holds one connection.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from common import redistls, sentinel
from common.settings import redact


class FollowingConnection(SentinelManagedConnection):
    """redis-py's Sentinel-managed connection, asking the sentinels again when it reconnects by itself.

    redis-py 8.2 asks the sentinels in `connect()`, which its pool calls when it hands a connection out.
    A connection held by a client (`single_connection_client`, the agent's reporter in each pool process)
    is not handed out again: after a failed command it reconnects in `send_packed_command`, which skips
    `connect()` and goes back to the address it had, the dead primary's ("Error 111 ... Connection
    refused" until the agent gives up). Here that reconnect goes through `connect()`, and so to the primary
    the sentinels name now. tests/chaos/test_sentinel_failover.py shows it.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def redis_client(url: str, **kwargs: Any) -> redis.Redis:
    """A client for `url`; `kwargs` as `redis.Redis.from_url` takes them (timeouts, retry, ...)."""
    if not sentinel.is_sentinel(url):
        # TLS parameters as arguments: redis-py would let the URL's override them, with its own defaults
        plain, tls = redistls.split(url)
        return redis.Redis.from_url(plain, **{**tls, **kwargs})
    parsed = sentinel.parse(url)
    single = kwargs.pop("single_connection_client", False)
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        parsed.master,
        sentinel_for(parsed),
        is_master=True,
        connection_class=FollowingConnection,
        username=parsed.username,
        password=parsed.password,
        db=parsed.db,
        **kwargs,
    )
    client = redis.Redis(connection_pool=pool, single_connection_client=single)
    client.auto_close_connection_pool = True  # as `Redis.from_url`: the pool is this client's own
    return client


def sentinel_for(parsed: sentinel.SentinelUrl, timeout_s: float = 2.0) -> Sentinel:
    """A redis-py `Sentinel` on the URL's sentinels, with their own credentials."""
    return Sentinel(
        list(parsed.sentinels),
        sentinel_kwargs={
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            **parsed.sentinel_kwargs(),
        },
    )


def data_nodes(url: str, timeout_s: float = 2.0) -> list[tuple[str, int]]:
    """The primary and the replicas the sentinels list for a sentinel URL (the primary first); for any
    other URL, nothing: the one node is the client's own."""
    if not sentinel.is_sentinel(url):
        return []
    parsed = sentinel.parse(url)
    manager = sentinel_for(parsed, timeout_s)
    try:
        primary = manager.discover_master(parsed.master)
        replicas = manager.discover_slaves(parsed.master)
    finally:
        for client in manager.sentinels:
            client.close()
    return [primary, *[node for node in replicas if node != primary]]


def node_client(url: str, node: tuple[str, int], **kwargs: Any) -> redis.Redis:
    """A plain client on one data node of a sentinel URL, with the URL's data-node credentials."""
    parsed = sentinel.parse(url)
    host, port = node
    return redis.Redis(
        host=host, port=port, username=parsed.username, password=parsed.password, db=parsed.db, **kwargs
    )


def described(url: str) -> str:
    """The URL without its password and, on rediss://, how the server's certificate is checked: the
    engine's and the agents' start line."""
    if not redistls.is_tls(url):
        return redact(url)
    return f"{redact(url)} ({redistls.describe(redistls.split(url)[1])})"


def unreachable(url: str, exc: BaseException) -> str:
    """What to tell an operator when Redis at `url` cannot be reached (no password): on rediss://, which
    TLS file cannot be read or that the server's certificate was refused, and what to check."""
    shown = redact(url)
    if redistls.is_tls(url):
        _, options = redistls.split(url)
        missing = redistls.unreadable(options)
        if missing:
            return (
                f"cannot connect to Redis at {shown} over TLS: {missing} cannot be read by this user; "
                "point it at the file (the CA that signed the Redis server's certificate)"
            )
        if redistls.is_tls_error(exc):
            return (
                f"cannot connect to Redis at {shown} over TLS ({exc}): {redistls.describe(options)}; check "
                "that ssl_ca_certs names the CA that signed the Redis server's certificate, and that the "
                "certificate names the host of the URL"
            )
    return (
        f"cannot reach Redis at {shown} ({exc}): start it, or point CONVERGE_BROKER_URL "
        "(or --broker-url) at it"
    )

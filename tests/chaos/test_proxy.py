"""The TCP proxy that chaos tests put between a process and Redis: cut, blackhole and heal, on a real Redis."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.localredis import LocalRedis
from tests.chaos.proxy import Mode, TcpProxy


@pytest.fixture
def proxy(redis_server: LocalRedis) -> Iterator[TcpProxy]:
    with TcpProxy(redis_server.port) as running:
        yield running


def client_through(proxy: TcpProxy, timeout_s: float = 2.0) -> redis.Redis:
    """A client that tries once: what the proxy does is what the test sees."""
    return redis.Redis.from_url(
        proxy.redis_url(),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def test_a_redis_client_through_the_proxy_fails_while_cut_and_works_after_heal(proxy: TcpProxy) -> None:
    client = client_through(proxy)
    assert client.ping()
    assert proxy.open_connections == 1

    proxy.cut()

    assert proxy.mode is Mode.CUT
    assert proxy.open_connections == 0
    with pytest.raises(redis.ConnectionError):
        client.ping()  # the open connection was closed
    with pytest.raises(redis.ConnectionError):
        client_through(proxy).ping()  # and a new one is closed at once

    proxy.heal()

    assert client.ping()
    assert client_through(proxy).set("proxy-test", "healed")
    assert client.get("proxy-test") == b"healed"
    client.close()


def test_a_blackholed_link_holds_what_was_sent_and_delivers_it_after_heal(proxy: TcpProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"

        proxy.blackhole()
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)  # nothing comes back while the link is a blackhole

        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(64) == b"+PONG\r\n"  # the held command went through


def test_a_connection_made_during_a_blackhole_times_out_then_works_after_heal(proxy: TcpProxy) -> None:
    proxy.blackhole()
    client = client_through(proxy, timeout_s=0.5)
    with pytest.raises(redis.TimeoutError):
        client.ping()  # accepted, but the handshake never gets an answer

    proxy.heal()

    client = client_through(proxy)
    assert client.ping()
    client.close()


def test_a_cut_ends_a_blackhole_and_closes_its_held_connections(proxy: TcpProxy) -> None:
    client = client_through(proxy, timeout_s=0.5)
    assert client.ping()
    proxy.blackhole()

    proxy.cut()

    with pytest.raises(redis.ConnectionError):
        client.ping()
    proxy.heal()
    assert client.ping()
    client.close()

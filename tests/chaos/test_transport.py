"""Converge's kombu transport against kombu's own when the broker connection is lost under an unacked message.

Each test replays what Celery's consumer does when its connection drops (`Connection.collect()`, then
`Connection.close()`) on a connection that, like the agent's, has a task channel with a message taken and
not yet acknowledged, and a second channel with an auto-delete fanout queue (Celery's remote control). The
link to Redis is cut by a TCP proxy, so Redis keeps its data and what was restored can be read back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue  # type: ignore[attr-defined]

from agents import junk
from common.celery_app import queue as direct_queue
from common.localredis import LocalRedis
from tests.chaos.proxy import TcpProxy

KOMBU = "redis"
CONVERGE = "agents.transport:Transport"
DB = 7  # a database of the shared private Redis that only these tests use


@pytest.fixture
def proxy(redis_server: LocalRedis) -> Iterator[TcpProxy]:
    with TcpProxy(redis_server.port) as running:
        yield running


@pytest.fixture
def direct(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A client straight to Redis (not through the proxy), on a database emptied before and after."""
    client = redis.Redis(port=redis_server.port, db=DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def connect(proxy: TcpProxy, transport: str) -> Any:
    options = {"socket_timeout": 2, "socket_connect_timeout": 2}
    return Connection(proxy.redis_url(DB), transport=transport, transport_options=options)  # type: ignore[no-untyped-call]


def take_one_message(connection: Any) -> tuple[Any, str]:
    """Publish a message, take it on the connection's default channel, and leave it unacknowledged."""
    name = f"steps-{uuid.uuid4().hex[:8]}"
    queue = direct_queue(name)
    with connection.Producer() as producer:
        producer.publish({"step": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    taken: list[Any] = []
    connection.Consumer(queue, callbacks=[lambda _body, message: taken.append(message)]).consume()
    connection.drain_events(timeout=5)
    assert len(taken) == 1
    return taken[0], name


def listen_on_a_remote_control_channel(connection: Any) -> None:
    """A second channel, as Celery's pidbox: an auto-delete queue bound to a fanout exchange."""
    fanout = Exchange("pidbox", type="fanout")  # type: ignore[no-untyped-call]
    queue = Queue(f"{uuid.uuid4().hex[:8]}.pidbox", fanout, auto_delete=True)  # type: ignore[no-untyped-call]
    connection.Consumer(queue, channel=connection.channel(), callbacks=[lambda _b, _m: None]).consume()


def lose_the_connection_as_celery_does(connection: Any, proxy: TcpProxy) -> None:
    """Cut the link with a BRPOP out (as in the worker's event loop), then Celery's `collect()`."""
    connection.default_channel._brpop_start()
    proxy.cut()
    connection.collect(socket_timeout=2)


def test_kombus_own_channel_still_cannot_close_after_celery_collected_its_lost_connection(
    proxy: TcpProxy, direct: redis.Redis
) -> None:
    connection = connect(proxy, KOMBU)
    message, _ = take_one_message(connection)
    listen_on_a_remote_control_channel(connection)
    lose_the_connection_as_celery_does(connection, proxy)
    proxy.heal()

    try:
        connection.close()
    except AttributeError as exc:  # the bug, as in the worker's "Unrecoverable error"
        assert "hostname" in str(exc)
    else:
        pytest.fail(
            "kombu's Redis channel now closes after Connection.collect(): the kombu bug is fixed, so drop "
            "Channel._connparams from agents/transport.py (and this test)"
        )
    with pytest.raises(AttributeError):
        message.ack()  # nor can a step that ran across the reconnect be acknowledged
    assert direct.hlen("unacked") == 1  # nor was it restored: it waits for the visibility timeout


def test_converge_channel_restores_the_unacked_message_once_redis_is_reachable_again(
    proxy: TcpProxy, direct: redis.Redis
) -> None:
    connection = connect(proxy, CONVERGE)
    _, queue = take_one_message(connection)
    listen_on_a_remote_control_channel(connection)
    lose_the_connection_as_celery_does(connection, proxy)
    proxy.heal()

    connection.close()

    assert direct.llen(queue) == 1  # back on its queue, for this agent or another
    assert direct.hlen("unacked") == 0


def test_converge_channel_acknowledges_a_message_taken_before_the_connection_was_lost(
    proxy: TcpProxy, direct: redis.Redis
) -> None:
    connection = connect(proxy, CONVERGE)
    message, queue = take_one_message(connection)
    listen_on_a_remote_control_channel(connection)
    lose_the_connection_as_celery_does(connection, proxy)
    connection.close()  # still cut off: nothing restored, and no error
    assert direct.hlen("unacked") == 1

    proxy.heal()
    message.ack()  # the step finished after the reconnect

    assert direct.hlen("unacked") == 0  # never delivered again
    assert direct.llen(queue) == 0


JUNK = {
    "not json": b"not json",
    "an empty list": b"[]",
    "null": b"null",
    "a number": b"1",
    "not utf-8": b"\xff\xfe",
    "an envelope without a delivery tag": b'{"body": "", "properties": {}}',
    "a body that is not base64": b'{"body": "not base64!", "properties": {"body_encoding": "base64", '
    b'"delivery_tag": "t", "delivery_info": {"exchange": "q", "routing_key": "q"}}}',
}


@pytest.mark.parametrize("raw", JUNK.values(), ids=JUNK.keys())
def test_converge_channel_drops_junk_and_delivers_the_next_message(
    proxy: TcpProxy, direct: redis.Redis, raw: bytes
) -> None:
    connection = connect(proxy, CONVERGE)
    name = f"steps-{uuid.uuid4().hex[:8]}"
    queue = direct_queue(name)
    taken: list[Any] = []
    connection.Consumer(queue, callbacks=[lambda body, message: taken.append(body)]).consume()
    dropped_before = junk.DROPPED.total

    direct.lpush(name, raw)
    with connection.Producer() as producer:
        producer.publish({"step": 1}, exchange=queue.exchange, routing_key=name)
    connection.drain_events(timeout=5)  # the junk: dropped, not raised
    connection.drain_events(timeout=5)

    assert taken == [{"step": 1}]
    assert junk.DROPPED.total == dropped_before + 1
    assert direct.llen(name) == 0
    assert direct.hlen("unacked") == 1  # the real message only, taken and not yet acknowledged
    connection.close()

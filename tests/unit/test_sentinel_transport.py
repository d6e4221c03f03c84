"""The agent's Sentinel transport is its Redis transport's fixes on kombu's Sentinel channel."""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

from agents import transport
from common import sentinel_transport


def test_the_agents_sentinel_channel_keeps_the_fixes_of_its_redis_channel() -> None:
    channel = transport.SentinelChannel

    assert issubclass(channel, transport.Channel) and issubclass(channel, kombu_redis.SentinelChannel)
    assert channel._brpop_read is transport.Channel._brpop_read, "junk on a queue is dropped"
    assert channel._connparams is transport.Channel._connparams, "a channel outlives its connection"
    assert channel._create_client is transport.Channel._create_client, "one client per pool"
    assert channel.Message is transport.Message
    assert channel._sentinel_managed_pool is sentinel_transport.Channel._sentinel_managed_pool
    assert transport.SentinelTransport.Channel is channel


def test_the_sentinels_come_from_the_transport_options_not_the_url() -> None:
    assert "sentinels" in sentinel_transport.Channel.from_transport_options
    assert "master_name" in sentinel_transport.Channel.from_transport_options
    assert issubclass(sentinel_transport.Transport, kombu_redis.SentinelTransport)

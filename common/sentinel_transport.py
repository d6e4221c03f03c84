"""kombu's Redis Sentinel transport, reading the sentinels from the transport options.

kombu 5.7's `SentinelChannel` finds the sentinels in the broker URL's `;`-separated alternatives, but
Celery takes such a URL for a list of failover brokers and connects to one at a time. So Celery is given
one `sentinel://` address (`common.sentinel.SentinelUrl.celery_url`) and every sentinel goes in the
transport option `sentinels` (`SentinelUrl.transport_options`), which this channel reads. The pool it makes
is redis-py's `SentinelConnectionPool`: it asks the sentinels where the primary is at every new connection,
so that a reconnect after a failover goes to the new primary.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from redis.sentinel import Sentinel


class Channel(kombu_redis.SentinelChannel):
    from_transport_options = (*kombu_redis.SentinelChannel.from_transport_options, "sentinels")  # type: ignore[assignment]
    sentinels: list[list[Any]] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        params = dict(self._connparams(asynchronous))  # type: ignore[no-untyped-call]
        first = [params.pop("host", None), params.pop("port", None)]
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("'master_name' transport option must be specified.")
        manager = Sentinel(
            [(str(h), int(p)) for h, p in self.sentinels or [first]],
            min_other_sentinels=getattr(self, "min_other_sentinels", 0),
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        # kombu closes the sentinels' connections with the channel's pools (`_disconnect_pools`)
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        credentials = {key: params[key] for key in ("username", "password") if key in params}
        return manager.master_for(master_name, redis.Redis, **credentials).connection_pool


class Transport(kombu_redis.SentinelTransport):
    Channel = Channel

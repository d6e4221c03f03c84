"""kombu's Redis transport, reusing one Redis client per connection pool.

kombu builds a new `redis.Redis` for every command it sends outside its event loop (each ack, each
unacked-message record, each task event): a client's constructor fills a table of ~200 response
callbacks, which profiling showed as a tenth of the agent's main process on a busy queue. A client is
only a view on its connection pool and is safe to share, so this channel keeps one per pool; a new pool
(after a reconnect) gets a new client.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        shared = self._shared
        if shared is None or shared[0] is not pool:
            shared = (pool, super()._create_client())  # type: ignore[no-untyped-call]
            self._shared = shared
        return shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel

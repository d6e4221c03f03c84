"""kombu's Redis transport, made to outlive a Redis restart and junk on a queue, with one client per pool.

- One Redis client per connection pool. kombu builds a new `redis.Redis` for every command it sends
  outside its event loop (each ack, each unacked-message record, each task event): a client's constructor
  fills a table of ~200 response callbacks, which profiling showed as a tenth of the agent's main process
  on a busy queue. A client is only a view on its connection pool and is safe to share, so this channel
  keeps one per pool; a new pool (after a reconnect) gets a new client.
- A channel that outlives its connection (kombu 5.7.0 bug, see `Channel._connparams`).
- Junk on a queue is dropped, not fatal (see `Channel._brpop_read`).

`SentinelTransport` is the same channel through Redis Sentinel (`common.sentinel_transport`): it follows a
failover and keeps these fixes.
"""

from __future__ import annotations

from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import loads

from agents import junk
from common import sentinel_transport


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class Message(virtual.Message):
    """kombu's message, raising `UndecodableMessage` for an envelope it cannot read.

    kombu builds it from the JSON it popped, before the message is recorded as unacknowledged and before
    Celery sees it: `null`, `[]`, an envelope without `properties` or `delivery_tag`, or a body that is not
    valid base64 fail here.
    """

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        try:
            super().__init__(payload, channel=channel, **kwargs)  # type: ignore[no-untyped-call]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise junk.UndecodableMessage(f"not a kombu envelope: {exc!r}") from exc


class Channel(kombu_redis.Channel):
    Message = Message
    _shared: tuple[Any, Any] | None = None
    _sync_connparams: dict[str, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        shared = self._shared
        if shared is None or shared[0] is not pool:
            shared = (pool, super()._create_client())  # type: ignore[no-untyped-call]
            self._shared = shared
        return shared[1]

    def _connparams(self, asynchronous: bool = False) -> Any:
        """kombu's connection parameters, kept for when this channel outlives its connection.

        Works around a bug of kombu 5.7.0 (with celery 5.7.0), seen when Redis is killed and restarted
        while a step runs. On a lost connection Celery's consumer calls `Connection.collect()`, then
        `Connection.close()`. `collect()` closes the channels and ignores connection errors, but those
        errors cut the closing short: the task channel's `close()` first reads its pending BRPOP reply
        (raises before the channel is marked closed) and the remote-control channel's raises while
        deleting its auto-delete queue, which ends the loop over the channels. So the task channel stays
        open, holding its unacknowledged messages, and `collect()` then sets the transport's `client` to
        None. `close()` closes that channel again: it disconnects its pools and restores its unacked
        messages, which needs a new pool, whose parameters kombu reads from `self.connection.client`:
        `AttributeError: 'NoneType' object has no attribute 'hostname'`. That is no connection error, so
        it escapes `ignore_errors` and Celery ends the worker ("Unrecoverable error"). The late ack of a
        step that ran across the reconnect fails the same way. With the parameters kept, the restore and
        the ack reach Redis (or fail with a connection error, which kombu and Celery ignore).
        tests/chaos/test_transport.py shows the bug on kombu's own transport: drop this method when that
        test says kombu is fixed.
        """
        if self.connection is None or self.connection.client is None:
            if asynchronous or self._sync_connparams is None:
                raise redis.ConnectionError("this channel's broker connection is closed")
            return dict(self._sync_connparams)
        params = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        if not asynchronous:
            self._sync_connparams = dict(params)
        return params

    def _brpop_read(self, **options: Any) -> bool:
        """kombu 5.7.0's `_brpop_read`, except that a message that cannot be decoded is dropped.

        kombu decodes the popped message (JSON, then its envelope) in the event loop, and any error there
        ends the worker. The message is already off the list and not yet recorded as unacknowledged, so
        dropping it here is final: it is never redelivered.
        """
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # as kombu: disconnect, so that the next poll reconnects
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            queue = _text(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            self._deliver_or_drop(item, queue)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _deliver_or_drop(self, item: bytes | str, queue: str) -> None:
        try:
            payload = loads(_text(item))  # type: ignore[no-untyped-call]
        except ValueError as exc:
            junk.drop(queue, item, exc)
            return
        try:
            self.connection._deliver(payload, queue)
        except junk.UndecodableMessage as exc:
            junk.drop(queue, item, exc)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, sentinel_transport.Channel):
    """This module's channel on a Sentinel-managed pool: its fixes, and the pool of the primary of the day."""


class SentinelTransport(sentinel_transport.Transport):
    Channel = SentinelChannel

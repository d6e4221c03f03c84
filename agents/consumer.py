"""Celery's task consumer, dropping a message Celery cannot use the way the transport drops junk.

kombu could read the envelope, but Celery cannot run what is in it: a body that does not decode, a content
type the agent does not accept, bad task headers, no task header, a task the agent does not have. Celery
already drops each (the agent survives), but logs it with a traceback and the body; here each is one
bounded line and is counted with the rest (`agents.junk.DROPPED`), then dropped as Celery does
(acknowledged or rejected, never delivered again).

With the autoscaler, the most steps the agent may reserve is the autoscaler's maximum (the throttle), not
the pool's size of the moment: Celery counts the latter when it sets the prefetch count again after a
reconnect, which would leave an agent that reconnected while its pool was small reserving one step at a
time, its pool never growing again.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from agents import junk


def queue_of(message: Any) -> str:
    info = message.delivery_info or {}
    return str(info.get("routing_key") or info.get("exchange") or "?")


class Consumer(CeleryConsumer):  # type: ignore[misc]
    @property
    def max_prefetch_count(self) -> int:
        limit = getattr(self.controller, "max_concurrency", None) or self.pool.num_processes
        return int(limit) * int(self.prefetch_multiplier)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        junk.drop(queue_of(message), message.body, exc)
        message.ack()

    def on_unknown_message(self, body: Any, message: Any) -> None:
        error = junk.UndecodableMessage("not a Celery task message: no `task` header")
        junk.drop(queue_of(message), message.body, error)
        message.reject_log_error(junk.log, self.connection_errors)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        error = junk.UndecodableMessage(f"no task named {exc}: only the engine's steps run here")
        junk.drop(queue_of(message), message.body, error)
        message.reject_log_error(junk.log, self.connection_errors)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        junk.drop(queue_of(message), message.body, exc)
        message.reject_log_error(junk.log, self.connection_errors)

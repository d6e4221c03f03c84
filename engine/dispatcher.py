"""Publishes ready steps to their queues: the role's queue, or one agent's queue for a scoped step."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from common import names
from common.models import StepMessage

# What publishing raises when Redis cannot be reached: redis-py's errors, kombu's, or the socket's own.
PUBLISH_ERRORS = (redis.RedisError, OperationalError, OSError)


def queue_of(message: StepMessage) -> str:
    return names.agent_queue(message.scope) if message.scope else names.role_queue(message.role)


class Dispatcher:
    """Sends step messages through Celery, so that workers and Flower see ordinary Celery tasks.

    Messages go to the default exchange with the queue's name as routing key: they land in the queue even
    before any agent has declared it, and wait there for one.
    """

    def __init__(self, app: Celery, client: redis.Redis, attempt_ttl_s: float) -> None:
        self.app = app
        self.client = client
        self.attempt_ttl_s = attempt_ttl_s
        self._lock = threading.Lock()

    def publish(self, messages: Iterable[StepMessage], *, expires_s: float | None = None) -> int:
        messages = list(messages)
        retried = [m for m in messages if m.attempt > 1]
        if retried:  # deliveries of the attempts before these are dropped by the agents
            pipe = self.client.pipeline(transaction=False)
            for m in retried:
                pipe.set(names.attempt_key(m.step_id), m.attempt, ex=int(self.attempt_ttl_s))
            pipe.execute()
        sent = 0
        # One Redis pipeline per batch of messages (kombu's publish batch) instead of a round trip each.
        with self._lock, self.app.producer_or_acquire() as producer, producer.batch(max_size=500):
            for message in messages:
                target = queue_of(message)
                self.app.send_task(
                    names.STEP_TASK,
                    kwargs=message.model_dump(mode="json", exclude_none=True),
                    task_id=f"{message.step_id}.{message.attempt}",
                    queue=target,
                    exchange="",
                    routing_key=target,
                    expires=expires_s,
                    producer=producer,
                    # What Flower and the worker's log show: which workflow, step and resource; the
                    # whole spec would cost a repr per step and could be large.
                    kwargsrepr=_display(message),
                )
                sent += 1
        return sent

    def stop(self, attempts: Iterable[tuple[str, int]], ttl_s: float = 86400) -> None:
        """Ask the agents to stop (or never start) these step attempts."""
        pipe = self.client.pipeline(transaction=False)
        for step_id, attempt in attempts:
            pipe.set(names.cancel_key(step_id, attempt), 1, ex=int(ttl_s))
        pipe.execute()


def _display(message: StepMessage) -> str:
    return (
        f"{{'workflow_id': {message.workflow_id!r}, 'step_id': {message.step_id!r}, "
        f"'resource': {message.resource!r}, 'attempt': {message.attempt}, 'mode': {message.mode!r}}}"
    )

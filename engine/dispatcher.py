"""Publishes ready steps to their queues: the role's queue, or one agent's queue for a scoped step."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from celery import Celery

from common import names
from common.models import StepMessage


def queue_of(message: StepMessage) -> str:
    return names.agent_queue(message.scope) if message.scope else names.role_queue(message.role)


class Dispatcher:
    """Sends step messages through Celery, so that workers and Flower see ordinary Celery tasks.

    Messages go to the default exchange with the queue's name as routing key: they land in the queue even
    before any agent has declared it, and wait there for one.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._lock = threading.Lock()

    def publish(self, messages: Iterable[StepMessage], *, expires_s: float | None = None) -> int:
        sent = 0
        with self._lock, self.app.producer_or_acquire() as producer:
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
                )
                sent += 1
        return sent

"""Messages on an agent's queues that cannot be decoded: each is logged once, counted and dropped.

Anyone who can write to Redis can push to a role queue. Celery would end the worker's process on the first
message kombu cannot read ("Unrecoverable error"), so the agent's transport hands such a message here
instead, and goes on with the next one. The count lives in the agent's main process, where the consumer
runs, for the agent to expose (heartbeat, health) later.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("converge.agent")

PREVIEW_CHARS = 200


class UndecodableMessage(ValueError):
    """A message that is not a kombu envelope the agent can read."""


class JunkCounter:
    """How many messages were dropped, in all and by reason (the exception's type). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_reason: Counter[str] = Counter()

    def add(self, reason: str) -> int:
        """Count one dropped message; returns the total so far."""
        with self._lock:
            self._by_reason[reason] += 1
            return self._by_reason.total()

    @property
    def total(self) -> int:
        with self._lock:
            return self._by_reason.total()

    def by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_reason)


DROPPED = JunkCounter()


def cut(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was: a log line stays one short line."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters."""
    return cut(repr(value), limit)


def root_of(error: BaseException) -> BaseException:
    """The error that made the message undecodable: the cause of an `UndecodableMessage`."""
    if isinstance(error, UndecodableMessage) and error.__cause__ is not None:
        return error.__cause__
    return error


def name_of(error: BaseException) -> str:
    """`JSONDecodeError`, `TypeError`, `binascii.Error`: what a message was dropped for."""
    kind = type(error)
    if kind.__module__ == "builtins" or kind.__name__ != "Error":
        return kind.__name__
    return f"{kind.__module__}.{kind.__name__}"


def drop(queue: str, raw: object, error: BaseException, counter: JunkCounter = DROPPED) -> None:
    """Log (one bounded line) and count a message taken off `queue` that cannot be decoded."""
    root = root_of(error)
    reason = name_of(root)
    total = counter.add(reason)
    log.error(
        "dropped a message on queue %s that the agent cannot read (%s: %s): %s; %d dropped since the agent "
        "started. Only Converge's engine should write to this queue: find what else writes to this Redis",
        queue,
        reason,
        cut(str(root), 120),
        preview(raw),
        total,
    )

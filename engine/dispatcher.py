"""Publishes ready steps to their queues: the role's queue, or one agent's queue for a scoped step.

A role step goes out stamped with the role's current fencing epoch. A step pinned to an agent that is not
alive (unavailable, or not started yet) is held here, not published: an unavailable agent gets no new work,
not even in its own queue. The watchdog publishes held steps once their agent is alive again; the store
keeps them `queued`, so an engine that restarts holds them again from there.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import redis
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu.exceptions import OperationalError

from common import names, signing
from common.models import StepMessage
from engine import batching

log = logging.getLogger("converge.engine")

T = TypeVar("T")

PUBLISH_BATCH = 100  # messages per Redis pipeline
FIRST_CHUNK = 8  # the first pipeline of a publish: small, so that an agent can start at once

# What publishing raises when Redis cannot be reached: redis-py's errors, kombu's, or the socket's own.
PUBLISH_ERRORS = (redis.RedisError, OperationalError, OSError)


def queue_of(message: StepMessage) -> str:
    return names.agent_queue(message.scope) if message.scope else names.role_queue(message.role)


class Dispatcher:
    """Sends step messages through Celery, so that workers and Flower see ordinary Celery tasks.

    Messages go to the default exchange with the queue's name as routing key: they land in the queue even
    before any agent has declared it, and wait there for one.
    """

    def __init__(
        self, app: Celery, client: redis.Redis, attempt_ttl_s: float, signer: Ed25519PrivateKey | None = None
    ) -> None:
        self.app = app
        # Signs every step message (common.signing): agents run only what verifies against its public key.
        self.signer = signer
        self.client = client
        self.attempt_ttl_s = attempt_ttl_s
        self._lock = threading.Lock()
        self._held_lock = threading.Lock()
        # What it published and has not ended yet, for the ingester to batch by (engine.batching).
        self.outstanding = batching.Outstanding()
        # Steps pinned to an agent that is not alive: by agent, then by (step, attempt).
        self._held: dict[str, dict[tuple[str, int], StepMessage]] = {}
        self._sent_event = bool(app.conf.task_send_sent_event)  # what `send_task` reads for every message

    def publish(self, messages: Iterable[StepMessage], *, expires_s: float | None = None) -> int:
        """Publish steps (holding those pinned to an agent that is not alive); returns how many went out.

        `messages` is read a chunk at a time, each chunk published before the next is read: the agents
        start on the first steps of a big workflow while the rest are still being made and signed. The
        first chunk is small (FIRST_CHUNK), so that the first step is out within a millisecond or so.
        """
        sent = 0
        for chunk in chunks(messages, FIRST_CHUNK, PUBLISH_BATCH):
            sent += self._publish_chunk(chunk, expires_s)
        return sent

    def _publish_chunk(self, messages: list[StepMessage], expires_s: float | None) -> int:
        epochs, away = self._prepare(messages)
        if away:
            self._hold([m for m in messages if m.scope in away])
            messages = [m for m in messages if m.scope not in away]
        amqp, reply_to = self.app.amqp, self.app.thread_oid  # as `send_task` gives them
        # One Redis pipeline per chunk (kombu's publish batch) instead of a round trip each.
        with self._lock, self.app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
            for message in messages:
                target = queue_of(message)
                kwargs = message.model_dump(mode="json", exclude_none=True)
                if message.role in epochs and not message.scope:
                    kwargs["epoch"] = epochs[message.role]
                if self.signer is not None:
                    kwargs = signing.sign(self.signer, kwargs)
                # Celery's own two halves of `send_task`, the message as `send_task` makes it (the tests
                # compare them): `send_task` around them routes, merges the task's options and reads the
                # configuration again for every message, two fifths of a publish, for a queue given here.
                task = amqp.create_task_message(
                    f"{message.step_id}.{message.attempt}",
                    names.STEP_TASK,
                    (),
                    kwargs,
                    expires=expires_s,
                    reply_to=reply_to,
                    create_sent_event=self._sent_event,
                    ignore_result=None,
                    # Flower's Tasks page shows the args column first: the resource and its workflow.
                    argsrepr=f"({message.resource!r}, 'wf {message.workflow_id[:8]}')",
                    # What Flower and the worker's log show: which workflow, step and resource; the
                    # whole spec would cost a repr per step and could be large.
                    kwargsrepr=_display(message),
                )
                options = {} if expires_s is None else {"expiration": expires_s}
                amqp.send_task_message(
                    producer,
                    names.STEP_TASK,
                    task,
                    queue=target,
                    exchange="",
                    routing_key=target,
                    # The default exchange routes by queue name: nothing to declare, and declaring (kombu's
                    # maybe_declare, a copy and bind of the queue per message) was a fifth of publishing.
                    declare=[],
                    **options,
                )
        self.outstanding.published(messages)
        return len(messages)

    def _prepare(self, messages: list[StepMessage]) -> tuple[dict[str, int], set[str]]:
        """In one round trip: mark the attempts of retried steps current (deliveries of the attempts before
        them are dropped by the agents), read the epochs of the roles of role steps, and find the agents
        that steps to run are pinned to and that are not alive."""
        retried = [m for m in messages if m.attempt > 1]
        roles = sorted({m.role for m in messages if not m.scope and m.mode == "apply"})
        pinned = sorted({m.scope for m in messages if m.scope and m.mode == "apply"})
        if not (retried or roles or pinned):
            return {}, set()
        pipe = self.client.pipeline(transaction=False)
        for m in retried:
            pipe.set(names.attempt_key(m.step_id), m.attempt, ex=int(self.attempt_ttl_s))
        if roles:
            pipe.mget([names.epoch_key(role) for role in roles])
        for agent_id in pinned:
            pipe.exists(names.agent_alive_key(agent_id))
        found = pipe.execute()[len(retried) :]
        epochs = dict(zip(roles, (int(e or 0) for e in found.pop(0)), strict=True)) if roles else {}
        return epochs, {agent_id for agent_id, alive in zip(pinned, found, strict=True) if not alive}

    def _hold(self, messages: list[StepMessage]) -> None:
        with self._held_lock:
            new = sorted({m.scope or "" for m in messages} - self._held.keys())
            for m in messages:
                self._held.setdefault(m.scope or "", {})[(m.step_id, m.attempt)] = m
        for agent_id in new:
            log.warning(
                "holding the steps pinned to agent %s: it is not alive, and gets no work until it is",
                agent_id,
            )

    def held(self) -> dict[str, int]:
        """How many steps wait for each agent that is not alive."""
        with self._held_lock:
            return {agent_id: len(steps) for agent_id, steps in self._held.items()}

    def release_held(self) -> int:
        """Publish the held steps of every agent that is alive again; returns how many went out."""
        with self._held_lock:
            agent_ids = sorted(self._held)
        if not agent_ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.exists(names.agent_alive_key(agent_id))
        back = [agent_id for agent_id, alive in zip(agent_ids, pipe.execute(), strict=True) if alive]
        with self._held_lock:
            messages = [m for agent_id in back for m in self._held.pop(agent_id, {}).values()]
        if not messages:
            return 0
        log.info(
            "agents %s are alive again: publishing the %d steps held for them", ", ".join(back), len(messages)
        )
        try:
            return self.publish(messages)  # holds again the steps of agents still away
        except PUBLISH_ERRORS:
            self._hold(messages)
            raise

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


def chunks(items: Iterable[T], first: int, size: int) -> Iterator[list[T]]:
    """`items` in lists of `first`, then of `size`, read as they are asked for."""
    it = iter(items)
    chunk = list(itertools.islice(it, first))
    while chunk:
        yield chunk
        chunk = list(itertools.islice(it, size))

"""The agent's elector: a thread of the main process that campaigns for the agent's roles and makes the
Celery consumer take exactly the role queues the agent leads, without a restart.

A backup tries again the moment the leader's lease would expire, so that it takes over within a few
milliseconds of the TTL. Queue changes run on the worker's event loop (kombu's hub, woken from here), since
Celery's consumer is not thread-safe. A delivery that reaches an agent which no longer leads the role is put
back on the queue by the step runner's claim (see agents/reporter.py), so a change of leader never runs a
step on the wrong agent, whatever the consumer is still doing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from agents.election import Election
from common import names

log = logging.getLogger("converge.agent")

# A backup asks again this long after the leader's lease should have run out (Redis's clock and ours).
TAKEOVER_SLACK_S = 0.02


class Elector:
    def __init__(self, election: Election, interval_s: float) -> None:
        self.election = election
        self.interval_s = interval_s
        self._consumer: Any = None
        self._consuming: set[str] = set()  # role queues the consumer was told to take
        self._epochs: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-elector", daemon=True)

    def start(self, consumer: Any) -> None:
        """Campaign from now on; `consumer` is Celery's (the sender of `worker_ready`)."""
        self._consumer = consumer
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        """Stop campaigning and give the leases up, so that a backup takes over at once (a clean stop)."""
        self._stop.set()
        if self._thread.ident is not None:  # not started when the worker failed before it was ready
            self._thread.join(timeout=5)
        try:
            self.election.release()
        except redis.RedisError as exc:
            log.warning("could not give up leadership (it expires by itself): %s", exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.tick())

    def tick(self) -> float:
        """One campaign; returns how long to wait before the next."""
        wait = self.interval_s
        try:
            for standing in self.election.campaign().values():
                if not standing.leader:
                    wait = min(wait, standing.remaining_s + TAKEOVER_SLACK_S)
        except redis.RedisError as exc:
            log.debug("campaign failed: %s", exc)  # the heartbeat says when Redis is out of reach
        self._follow(self.election.leading())
        return wait

    def _follow(self, leading: dict[str, int]) -> None:
        for role, epoch in leading.items():
            if self._epochs.get(role) != epoch:
                log.warning("leading role %s at epoch %d", role, epoch)
        for role in self._epochs.keys() - leading.keys():
            log.warning("no longer leading role %s: a backup of it now", role)
        self._epochs = dict(leading)
        wanted = {names.role_queue(role) for role in leading}
        consumer = self._consumer
        hub = getattr(getattr(consumer, "controller", None), "hub", None)
        if hub is None:
            return
        for queue in sorted(wanted - self._consuming):
            hub.call_soon(consumer.add_task_queue, queue)
        for queue in sorted(self._consuming - wanted):
            hub.call_soon(consumer.cancel_task_queue, queue)
        self._consuming = wanted

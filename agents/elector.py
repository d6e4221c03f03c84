"""The agent's elector: a thread of the main process that campaigns for the agent's roles and makes the
Celery consumer take exactly the role queues the agent leads, without a restart.

A backup tries again the moment the leader's lease would expire, so that it takes over within a few
milliseconds of the TTL. Queue changes run on the worker's event loop (kombu's hub, woken from here), since
Celery's consumer is not thread-safe. A delivery that reaches an agent which no longer leads the role is put
back on the queue by the step runner's claim (see agents/reporter.py), so a change of leader never runs a
step on the wrong agent, whatever the consumer is still doing.

The roles can change while the agent runs (agents.live): a new role enters the election at the next tick; a
removed one stops being consumed at once, and its lease is renewed until no step of it runs here any more
(a step ends under the epoch it started with), then given up, so that a backup takes over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from common import names
from common.election import Election

log = logging.getLogger("converge.agent")

# A backup asks again this long after the leader's lease should have run out (Redis's clock and ours).
TAKEOVER_SLACK_S = 0.02


class Elector:
    def __init__(
        self,
        election: Election,
        interval_s: float,
        running: Callable[[str], bool] = lambda role: False,
    ) -> None:
        self.election = election
        self.interval_s = interval_s
        self.running = running  # whether a step of the role runs on this agent now
        self.on_left: Callable[[str], None] = lambda role: None  # a removed role's lease was given up
        self._roles_lock = threading.Lock()
        self._new_roles: list[str] | None = None  # from change_roles, taken by the elector's thread
        self._leaving: set[str] = set()  # removed roles whose steps still run here
        self._wake = threading.Event()
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

    def change_roles(self, roles: list[str]) -> None:
        """Campaign for `roles` from now on (any thread): the elector's thread applies it at once."""
        with self._roles_lock:
            self._new_roles = sorted(set(roles))
        self._wake.set()

    @property
    def leading(self) -> list[str]:
        """The roles this agent leads now (for its health file)."""
        return sorted(self._epochs)

    @property
    def consuming(self) -> list[str]:
        """The role queues the consumer was told to take."""
        return sorted(self._consuming)

    @property
    def leaving(self) -> set[str]:
        """Removed roles not given up yet: their steps still run here."""
        return set(self._leaving)

    def stop(self) -> None:
        """Stop campaigning and give the leases up, so that a backup takes over at once (a clean stop)."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:  # not started when the worker failed before it was ready
            self._thread.join(timeout=5)
        try:
            self.election.release()
        except redis.RedisError as exc:
            log.warning("could not give up leadership (it expires by itself): %s", exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick())
            self._wake.clear()

    def _take_roles(self) -> None:
        with self._roles_lock:
            new, self._new_roles = self._new_roles, None
        if new is not None:
            for role in set(new) - set(self.election.roles):
                log.warning("role %s added: campaigning for it", role)
                self.election.add(role)
            self._leaving = (self._leaving | set(self.election.roles)) - set(new)
        for role in sorted(self._leaving):
            if self.running(role):
                continue
            try:
                self.election.drop(role)
            except redis.RedisError as exc:
                log.warning("could not give up role %s (its lease expires by itself): %s", role, exc)
            log.warning("role %s removed: no longer campaigning for it", role)
            self._leaving.discard(role)
            self.on_left(role)

    def tick(self) -> float:
        """One campaign; returns how long to wait before the next."""
        self._take_roles()
        wait = self.interval_s
        if self._leaving:  # look again soon whether its last steps ended
            wait = min(wait, 0.2)
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
            if role in self.election.roles:  # not one removed from the agent's settings
                log.warning("no longer leading role %s: a backup of it now", role)
        self._epochs = dict(leading)
        wanted = {names.role_queue(role) for role in leading if role not in self._leaving}
        consumer = self._consumer
        hub = getattr(getattr(consumer, "controller", None), "hub", None)
        if hub is None:
            return
        for queue in sorted(wanted - self._consuming):
            hub.call_soon(consumer.add_task_queue, queue)
        for queue in sorted(self._consuming - wanted):
            hub.call_soon(consumer.cancel_task_queue, queue)
        self._consuming = wanted

"""The agent announces itself on Redis: who it is, its roles, and that it is alive (a key with a TTL)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from agents import identity
from agents.config import AgentSettings
from agents.connection import fail_fast
from agents.healthfile import HealthWriter
from common import names
from common.models import AgentInfo

log = logging.getLogger("converge.agent")


class Link:
    """Whether the agent can reach Redis, as its heartbeats tell: after `max_failures` failed heartbeats in a
    row the agent is cut off (the seed's maximum connection failures) until one succeeds again.

    `cut_off` lives in memory shared with the pool processes (forked from this one), whose step watchers
    end their steps when it is set.
    """

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures
        self.failures = 0
        self._flag = multiprocessing.RawValue("b", 0)
        self.on_cut_off: Callable[[int], None] = lambda failures: None
        self.on_restored: Callable[[], None] = lambda: None

    @property
    def cut_off(self) -> bool:
        return bool(self._flag.value)

    def failed(self) -> None:
        self.failures += 1
        if self.failures == self.max_failures:
            self._flag.value = 1
            self.on_cut_off(self.failures)

    def end_steps(self) -> None:
        """Have the step watchers end every running step now: the agent stops, its steps run elsewhere."""
        self._flag.value = 1

    def succeeded(self) -> None:
        was_cut_off = self.cut_off
        self.failures = 0
        if was_cut_off:
            self._flag.value = 0
            self.on_restored()


class Displaced(Exception):
    """Another run of an agent with this id holds its alive key."""


class Heartbeat:
    """A thread in the agent's main process that renews the agent's alive key until stopped.

    Beats keep their cadence whatever a failed one cost, and each gives up after one interval, so that
    `max_failures` failed beats take at most (max_failures + 1) intervals: less than the TTL after which the
    engine holds the agent lost and runs its steps again.
    """

    def __init__(
        self,
        broker_url: str,
        info: AgentInfo,
        interval_s: float,
        ttl_s: float,
        link: Link,
        token: str,
        event_key: str | None = None,
    ) -> None:
        self.client = fail_fast(broker_url, interval_s)
        self._renew = self.client.register_script(identity.RENEW)  # EVALSHA on every beat
        self.info = info
        self.token = token  # this run's hold on the id (agents.identity.claim)
        self.event_key = event_key  # a trusted agent's status-event key, kept in Redis with the id
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.link = link
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-heartbeat", daemon=True)
        # Another run took this agent's id (this one was silent for longer than its TTL): by default this
        # process stops as if asked to (SIGTERM), since two agents of one id would share a queue.
        self.on_displaced: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM)
        # Redis refuses the agent's user (its password is wrong, or the engine deleted it): True when the
        # agent must stop for it (an enrolled agent the operator revoked); by default it tries again.
        self.on_refused: Callable[[], bool] = lambda: False
        # The health file that `converge-agent health` reads (agents.healthfile), rewritten every beat.
        self.health: HealthWriter | None = None

    def start(self) -> None:
        self.tick()
        self._thread.start()

    def beat(self) -> None:
        self.info.last_seen = datetime.now(UTC)
        keys = [names.agent_alive_key(self.info.id), names.AGENTS_HASH]
        ttl_ms = int(self.ttl_s * 1000)
        args: list[str | int] = [self.token, ttl_ms, self.info.id, self.info.model_dump_json()]
        if self.event_key is not None:
            keys.append(names.agent_event_key(self.info.id))
            args.append(self.event_key)
        if not self._renew(keys=keys, args=args):
            raise Displaced(f"another agent now holds the id {self.info.id!r}")

    def tick(self) -> None:
        try:
            self.beat()
        except Displaced as exc:
            log.error("%s: this agent was silent for longer than its TTL; it stops", exc)
            self._stop.set()
            self._tell_health(False, str(exc))
            self.on_displaced()
        except redis.AuthenticationError as exc:
            if self.on_refused():
                self._stop.set()
                self.link.end_steps()
            else:
                self._failed(exc)
            self._tell_health(False, f"{exc.__class__.__name__}: {exc}")
        except redis.RedisError as exc:
            self._failed(exc)
            self._tell_health(False, f"{exc.__class__.__name__}: {exc}")
        else:
            self.link.succeeded()
            self._tell_health(True, None)

    def _tell_health(self, redis_ok: bool, error: str | None, *, stopped: bool = False) -> None:
        if self.health is not None:
            self.health.beat(redis_ok, error, stopped=stopped)

    def _failed(self, exc: redis.RedisError) -> None:
        self.link.failed()
        failures, limit = self.link.failures, self.link.max_failures
        if failures <= limit:
            log.warning(
                "heartbeat failed (%d of %d before this agent ends its steps): %s", failures, limit, exc
            )
        elif failures % 30 == 0:  # cut off: say so now and then, not every beat
            log.warning("still cannot reach Redis after %d heartbeats: %s", failures, exc)

    def _loop(self) -> None:
        due = time.monotonic()
        while True:
            due += self.interval_s
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.tick()
            due = max(due, time.monotonic() - self.interval_s)  # after a long stall, do not beat in a burst

    def stop(self) -> None:
        self._stop.set()
        self._tell_health(not self.link.cut_off, None, stopped=True)
        try:
            self.info.last_seen = datetime.now(UTC)
            keys = [names.agent_alive_key(self.info.id), names.AGENTS_HASH]
            args = [self.token, self.info.id, self.info.model_dump_json()]
            self.client.eval(identity.RELEASE, 2, *keys, *args)  # only while this run holds the id
        except redis.RedisError as exc:
            log.warning("could not sign off: %s", exc)


def agent_info(settings: AgentSettings, version: str) -> AgentInfo:
    """What the agent announces: who it is, its roles, and the settings the engine needs to know."""
    now = datetime.now(UTC)
    return AgentInfo(
        id=settings.id,
        roles=settings.roles,
        host=socket.gethostname(),
        pid=os.getpid(),
        version=version,
        throttle=settings.throttle,
        step_timeout_s=settings.step_timeout_s,
        heartbeat_ttl_s=settings.heartbeat_ttl_s,
        started_at=now,
        last_seen=now,
    )

"""The agent announces itself on Redis: who it is, its roles, and that it is alive (a key with a TTL)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime

import redis

from agents.config import AgentSettings
from common import names
from common.models import AgentInfo

log = logging.getLogger("converge.agent")


class Heartbeat:
    """A thread in the agent's main process that renews the agent's alive key until stopped."""

    def __init__(self, client: redis.Redis, info: AgentInfo, interval_s: float, ttl_s: float) -> None:
        self.client = client
        self.info = info
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        self.info.last_seen = datetime.now(UTC)
        pipe = self.client.pipeline()
        pipe.hset(names.AGENTS_HASH, self.info.id, self.info.model_dump_json())
        pipe.set(names.agent_alive_key(self.info.id), str(self.info.pid), px=int(self.ttl_s * 1000))
        pipe.execute()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.info.last_seen = datetime.now(UTC)
            self.client.hset(names.AGENTS_HASH, self.info.id, self.info.model_dump_json())
            self.client.delete(names.agent_alive_key(self.info.id))
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
        started_at=now,
        last_seen=now,
    )

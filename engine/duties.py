"""The singleton duties of the engines: several engines serve one estate, one of them holds these.

Every engine serves the API and reads the status stream (each is one consumer of the ingester's group).
What must happen once for the estate runs only on the engine that holds the duties lease: the watchdog's
verdicts (timeouts, lost agents, due retries) and retention, the compliance schedules, the import monitor.
The lease is the agents' (common.election): taken with NX and a TTL, renewed by its holder, and believed
only until the renew deadline on the holder's own clock, so that a paused engine stops acting before
another can take the lease.

What one engine recorded and had not yet published when it died is `queued` in the store and in no queue.
So the engine that takes the duties publishes every queued step again, and does so again whenever another
engine stops (its alive key expires) or restarts (its key names another run). Agents drop a second
delivery of an attempt they already claimed, so publishing again never runs a step twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import redis

from common import names
from common.election import Election

log = logging.getLogger("converge.engine")

DUTIES = "duties"  # the one lease, for all the duties: they share their state (the watchdog's) and the store

# KEYS: the sorted set of the engines alive. ARGV: this engine's run ("ID/RUN"), the TTL in ms. Renews this
# run's entry (its score: when it expires, by Redis's clock), drops the expired ones, returns the rest.
_ALIVE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# KEYS: the lease, the epoch. ARGV: the holder, its engine id's prefix ("ID/"), the TTL in ms. A restarted
# engine takes its own earlier run's lease at once, instead of waiting out its TTL (that run is gone: two
# live engines share an id: each has its own, by default its host and API port).
_TAKE_OWN = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and string.sub(holder, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return redis.call('INCR', KEYS[2])
end
return 0
"""


class Duties:
    """Campaigns for the duties lease and keeps this engine's alive key, in one thread; `run` until `stop`.

    `on_take` runs (in that thread) each time this engine takes the lease; `on_gone` with the ids of engines
    that stopped or restarted while this one held it, and of those the ones that do not run now.
    """

    def __init__(
        self,
        client: redis.Redis,
        engine_id: str,
        ttl_s: float,
        *,
        on_take: Callable[[], object] = lambda: None,
        on_gone: Callable[[list[str], list[str]], object] = lambda gone, absent: None,
    ) -> None:
        self.client = client
        self.engine_id = engine_id
        self.run_id = uuid.uuid4().hex[:12]
        self.holder = f"{engine_id}/{self.run_id}"
        self.ttl_s = ttl_s
        self.renew_s = ttl_s / 5
        self.on_take = on_take
        self.on_gone = on_gone
        self.election = Election(
            client,
            [DUTIES],
            self.holder,
            ttl_s,
            ttl_s * 0.7,
            lease_key=names.duties_lease_key,
            epoch_key=names.duties_epoch_key,
        )
        self._take_own = client.register_script(_TAKE_OWN)
        self._alive = client.register_script(_ALIVE)
        self._stop = threading.Event()
        self._held = False
        self._seen: set[str] = set()  # the runs of the engines alive at the last tick ("ID/RUN")
        self.lease_holder: str | None = None

    def leading(self) -> bool:
        """Whether this engine may act on the duties now (within the renew deadline of its lease)."""
        return DUTIES in self.election.leading()

    def start(self) -> None:
        """Announce this engine, take the lease if it is free or this engine's own earlier run's, and
        campaign once. Raises redis.RedisError when Redis cannot be reached."""
        earlier = [run for run in self.engines() if run.startswith(f"{self.engine_id}/")]
        if earlier != [self.holder]:
            log.warning(
                "engine id %s is alive under another run too: if that is not an earlier run of this "
                "engine, give each engine its own id (CONVERGE_ENGINE_ID)",
                self.engine_id,
            )
        self._take_own(
            keys=[names.duties_lease_key(DUTIES), names.duties_epoch_key(DUTIES)],
            args=[self.holder, f"{self.engine_id}/", int(self.ttl_s * 1000)],
        )
        self.tick()

    def tick(self) -> None:
        """Campaign, renew this engine's entry among the engines alive, and act on a change of holder or
        of the engines."""
        standing = self.election.campaign()[DUTIES]
        self.lease_holder = standing.holder
        engines = self.engines()
        if standing.leader and not self._held:
            log.info(
                "this engine (%s) holds the singleton duties now, epoch %d", self.engine_id, standing.epoch
            )
            self.on_take()  # if it fails (the store is down), the next tick takes the duties again
            self._held = True
        elif self._held and not standing.leader:
            self._held = False
            log.warning("this engine (%s) lost the singleton duties to %s", self.engine_id, standing.holder)
        if self._held:
            gone = gone_engines(self._seen, engines)
            if gone:
                log.warning("engines %s stopped or restarted: publishing queued steps again", ", ".join(gone))
                self.on_gone(gone, absent_engines(gone, engines))
        self._seen = engines

    def engines(self) -> set[str]:
        """The runs of the engines alive now ("ID/RUN"), this one's renewed: one script, on Redis's clock."""
        alive = self._alive(keys=[names.ENGINES_ALIVE], args=[self.holder, int(self.ttl_s * 1000)])
        return {run.decode() if isinstance(run, bytes) else str(run) for run in alive}

    def run(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.tick()
            except redis.RedisError as exc:
                if self._held and not self.leading():
                    self._held = False
                    log.warning("the singleton duties lapse: Redis cannot be reached to renew them (%s)", exc)
                else:
                    log.warning("duties: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("duties: the campaign failed; retrying")

    def stop(self) -> None:
        """Stop campaigning and give the lease up, so that another engine takes the duties at once."""
        self._stop.set()
        try:
            self.election.release()
            self.client.zrem(names.ENGINES_ALIVE, self.holder)
        except redis.RedisError:
            pass  # the lease and the entry expire by themselves

    def others(self) -> list[str]:
        """The other engines alive at the last tick."""
        return sorted({run.split("/", 1)[0] for run in self._seen} - {self.engine_id})

    def describe(self) -> dict[str, object]:
        """For `/v1/health`: this engine, the holder of the duties, and the engines alive."""
        return {
            "engine": self.engine_id,
            "leading": self.leading(),
            "holder": (self.lease_holder or "").split("/", 1)[0] or None,
            "engines": sorted({run.split("/", 1)[0] for run in self._seen}),
        }


def gone_engines(before: set[str], now: set[str]) -> list[str]:
    """The ids of the engines whose runs of `before` are not alive `now` (stopped, or restarted)."""
    return sorted({run.split("/", 1)[0] for run in before - now})


def absent_engines(ids: list[str], now: set[str]) -> list[str]:
    """The `ids` with no run alive `now`: their engines stopped, not restarted."""
    running = {run.split("/", 1)[0] for run in now}
    return [engine_id for engine_id in ids if engine_id not in running]


def default_engine_id(hostname: str, port: int) -> str:
    """An engine's id when none is set: its host and API port, which no two live engines share."""
    return f"{hostname}:{port}"

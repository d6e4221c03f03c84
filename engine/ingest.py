"""The status ingester: reads the status stream through a consumer group, records, then acknowledges.

An entry is acknowledged only after the store has committed it, so a crash loses nothing: the pending
entries are read again on restart, and the store ignores what it already has (step, attempt, sequence).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from pydantic import TypeAdapter, ValidationError

from common import names
from common.models import StatusEvent
from common.store import RecordResult, Store

log = logging.getLogger("converge.engine")

# Recording a batch has a fixed cost (a transaction of a few statements) that dwarfs the cost per event.
# When a read brings several events at once, the stream is busy: wait LINGER_S for more and record them
# together. One or two events at a time (an idle engine, a chain of steps) never wait.
LINGER_MIN = 3
LINGER_S = 0.004


class Ingester:
    """One consumer of the engine's group; runs in a thread of the engine service."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        act: Callable[[RecordResult], None],
        consumer: str = "engine-1",
        batch: int = 1000,
    ) -> None:
        self.client = client
        self.store = store
        self.act = act
        self.consumer = consumer
        self.batch = batch
        self._stop = threading.Event()
        self._backlog = True  # first re-read what was delivered to us but never acknowledged

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(names.STATUS_STREAM, names.STATUS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, count: int, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        start = "0" if self._backlog else ">"
        reply = self.client.xreadgroup(
            names.STATUS_GROUP, self.consumer, {names.STATUS_STREAM: start}, count=count, block=block_ms
        )
        return reply[0][1] if reply else []  # type: ignore[index,return-value]

    def run_once(self, block_ms: int = 1000) -> int:
        """Read, record and acknowledge one batch. Returns the number of entries handled."""
        entries = self._read(self.batch, None if self._backlog else block_ms)
        if self._backlog and not entries:
            self._backlog = False
            return 0
        if LINGER_MIN <= len(entries) < self.batch and not self._backlog:
            # A busy stream: a few milliseconds more turn many small transactions into one.
            time.sleep(LINGER_S)
            entries += self._read(self.batch - len(entries), None)
        events = _parse([fields.get(b"e", b"") for _, fields in entries])
        began = time.perf_counter()
        result = self.store.record(events)
        self.act(result)
        log.debug("recorded %d events in %.1f ms", len(events), (time.perf_counter() - began) * 1000)
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            pipe = self.client.pipeline()
            pipe.xack(names.STATUS_STREAM, names.STATUS_GROUP, *ids)
            pipe.xdel(names.STATUS_STREAM, *ids)
            pipe.execute()
        if result.stale or result.duplicate:
            log.info(
                "recorded %d stale and %d duplicate status events: nothing changed",
                result.stale,
                result.duplicate,
            )
        return len(entries)

    def run(self) -> None:
        self._recreate_group()  # guarded: with Redis down, the loop's NOGROUP handling tries again
        while not self._stop.is_set():
            try:
                self.run_once()
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost the stream (a restart without persistence): make the group again.
                    log.warning("the status stream's consumer group is gone; creating it again")
                    self._recreate_group()
                else:
                    log.warning("status stream error (%s); retrying", exc)
                    self._stop.wait(1.0)
            except redis.RedisError as exc:
                log.warning("status stream unavailable (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("status ingestion failed; retrying")
                self._stop.wait(1.0)

    def _recreate_group(self) -> None:
        try:
            self.ensure_group()
        except redis.RedisError as exc:
            log.warning("cannot create the consumer group yet (%s); retrying", exc)
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()


_EVENTS = TypeAdapter(list[StatusEvent])


def _parse(raw: list[bytes]) -> list[StatusEvent]:
    """Validate a batch of events in one call; on a malformed one, fall back to one by one and drop it."""
    try:
        return _EVENTS.validate_json(b"[" + b",".join(raw) + b"]")
    except ValidationError:
        events = []
        for item in raw:
            try:
                events.append(StatusEvent.model_validate_json(item))
            except ValidationError as exc:
                log.error("dropping a malformed status entry %r: %s", item[:200], exc)
        return events

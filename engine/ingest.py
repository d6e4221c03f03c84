"""The status ingester: reads the status stream through a consumer group, records, then acknowledges.

An entry is acknowledged only after the store has committed it, so a crash loses nothing: the pending
entries are read again on restart, and the store ignores what it already has (step, attempt, sequence).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from pydantic import ValidationError

from common import names
from common.models import StatusEvent
from common.store import RecordResult, Store

log = logging.getLogger("converge.engine")


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

    def run_once(self, block_ms: int = 1000) -> int:
        """Read, record and acknowledge one batch. Returns the number of entries handled."""
        start = "0" if self._backlog else ">"
        reply = self.client.xreadgroup(
            names.STATUS_GROUP,
            self.consumer,
            {names.STATUS_STREAM: start},
            count=self.batch,
            block=None if self._backlog else block_ms,
        )
        entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1] if reply else []  # type: ignore[index,assignment]
        if self._backlog and not entries:
            self._backlog = False
            return 0
        events: list[StatusEvent] = []
        for _entry_id, fields in entries:
            try:
                events.append(StatusEvent.model_validate_json(fields[b"e"]))
            except (KeyError, ValidationError) as exc:
                log.error("dropping a malformed status entry: %s", exc)
        result = self.store.record(events)
        self.act(result)
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
        self.ensure_group()
        while not self._stop.is_set():
            try:
                self.run_once()
            except redis.RedisError as exc:
                log.warning("status stream unavailable (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("status ingestion failed; retrying")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()

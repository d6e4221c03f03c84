"""Whether the engine can work: Redis answers, the store takes writes, status events are being recorded.

The store is watched from the statements the engine itself runs (the API's, the ingester's, the
watchdog's): one that fails because the store cannot be used, or that has waited longer than `stall_s`,
marks the store down until a statement of the same kind succeeds. On SQLite a write lock held by another
process lets reads through, so only a failed or waiting write shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from common import names
from common.errors import Unreachable

log = logging.getLogger("converge.engine")

# A statement that waits this long means the store is not taking work (SQLite waits 30 s for a lock).
STALL_S = 5.0
# After a write failed, reads that work say the store is back only once no write has failed for this long:
# an idle engine is not reported down for ever, and the next write that waits shows the outage again.
RECHECK_S = 30.0
_WRITES = {"INSERT", "UPDATE", "DELETE", "REPLACE"}
_OUTAGES = (OperationalError, InterfaceError, DisconnectionError, sqlalchemy.exc.TimeoutError, Unreachable)


def store_is_down(exc: BaseException) -> bool:
    """True when an error says the store cannot be used now (locked, unreachable, out of disk, I/O error),
    not that one statement is wrong: what failed should be tried again later, not blamed."""
    if isinstance(exc, _OUTAGES):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@dataclass(frozen=True)
class StoreStatus:
    ok: bool
    error: str | None = None
    down_since: float | None = None  # a Unix time


class StoreWatch:
    """Follows the outcome of every statement the engine runs on its store (see the module docstring)."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}  # thread -> when its statement began
        self._down_since: float | None = None
        self._down_on_write = False
        self._failed_at = 0.0
        self._error: str | None = None

    def attach(self, store: object) -> StoreWatch:
        """Listen to the statements of a SQLAlchemy store; any other store is reported as always up."""
        engine = getattr(store, "engine", None)
        if isinstance(engine, sqlalchemy.Engine):
            event.listen(engine, "before_cursor_execute", self._before)
            event.listen(engine, "after_cursor_execute", self._after)
            event.listen(engine, "handle_error", self._failed)
        return self

    def began(self) -> None:
        with self._lock:
            self._running[threading.get_ident()] = time.time()

    def succeeded(self, wrote: bool) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)
            if self._down_since is None:
                return
            if self._down_on_write and not wrote and time.time() - self._failed_at < RECHECK_S:
                return
            down_s = time.time() - self._down_since
            self._down_since, self._error = None, None
        log.info("the store answers again, after %.0f s", down_s)

    def failed(self, exc: BaseException, wrote: bool) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)
            if not store_is_down(exc):
                return
            self._failed_at = time.time()
            if self._down_since is not None:
                self._down_on_write = self._down_on_write or wrote
                return
            self._down_since, self._down_on_write = self._failed_at, wrote
            self._error = describe(exc)
        log.warning(
            "the store is unavailable (%s): what needs it answers 503, status events wait in the stream",
            self._error,
        )

    def status(self) -> StoreStatus:
        now = time.time()
        with self._lock:
            if self._down_since is not None:
                return StoreStatus(False, self._error, self._down_since)
            oldest = min(self._running.values(), default=now)
        if now - oldest > self.stall_s:
            error = (
                f"a statement has waited {now - oldest:.0f}s for the store: another process may hold its "
                "lock, or the database is overloaded or unreachable"
            )
            return StoreStatus(False, error, oldest)
        return StoreStatus(True)

    def _before(self, *_: Any) -> None:
        self.began()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.succeeded(_is_write(statement))

    def _failed(self, context: ExceptionContext) -> None:
        exc = context.sqlalchemy_exception or context.original_exception
        self.failed(exc, _is_write(context.statement or ""))


def _is_write(statement: str) -> bool:
    words = statement.split(None, 1)
    return bool(words) and words[0].upper() in _WRITES


def describe(exc: BaseException) -> str:
    """An error in one line: its class and the first line of its message (SQLAlchemy adds the SQL)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:300] if text else ''}"


def _iso(when: float | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, UTC).isoformat()


def report(client: redis.Redis, watch: StoreWatch, duties: dict[str, object] | None = None) -> dict[str, Any]:
    """The document of `GET /v1/health`: `ok` is false while Redis or the store cannot be used; `duties`
    says which engine holds the singleton duties (engine.duties)."""
    store = watch.status()
    try:
        client.ping()
        pipe = client.pipeline(transaction=False)
        pipe.xlen(names.STATUS_STREAM)
        pipe.xlen(names.DEAD_LETTER_STREAM)
        pipe.hgetall(names.EVENTS_REFUSED)
        pending, dead, counts = pipe.execute()
        refused = {k.decode(): int(v) for k, v in counts.items()}
        redis_part: dict[str, Any] = {"ok": True, "error": None}
    except redis.RedisError as exc:
        pending = dead = refused = None
        redis_part = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
    return {
        "ok": redis_part["ok"] and store.ok,
        "redis": redis_part,
        "store": {"ok": store.ok, "error": store.error},
        "ingest": {
            # status events on the stream, not yet recorded (read or not)
            "pending": pending,
            "dead_letters": dead,
            # status entries refused, by reason: unsigned, forged, unknown agent, not admitted, not holder
            "refused": refused,
            "store_down_since": _iso(store.down_since),
        },
        "duties": duties,
    }

"""Stopping a running step: cancellation seen in Redis, and the agent's own no-progress timeout.

Cancellation is Converge's own state (a key per step attempt set by the engine), not Celery's revoke: a
revoke signals whatever the pool process runs at that moment, and is lost while no worker listens. A
watcher thread in each pool process looks at the current step; when it must stop, it kills the process
groups the step attached (a `command` and all its children), so a step that never looks at its context
stops too. A step that still has not returned after a grace period ends its pool process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from common import names
from common.models import StepMessage

log = logging.getLogger("converge.agent")

POLL_S = 0.2
GRACE_S = 3.0


@dataclass
class _Current:
    message: StepMessage
    timeout_s: float
    last_progress: float
    started: float
    on_abandon: Callable[[str], None]
    claim_renewed: float = 0.0
    groups: list[int] = field(default_factory=list)
    reason: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class StepControl:
    """One per pool process: runs at most one step at a time (prefork), watched by one thread."""

    def __init__(
        self, client: Callable[[], redis.Redis], claim_ttl_s: float, cut_off: Callable[[], bool]
    ) -> None:
        self._client = client
        self._claim_ttl_s = claim_ttl_s
        # True while the agent has lost Redis for `max_connection_failures` heartbeats: nobody can learn
        # what its steps do any more, and the engine will run them again elsewhere, so they end here.
        self._cut_off = cut_off
        self._redis_ok = True
        self._current: _Current | None = None
        self._lock = threading.Lock()
        self._pid = 0

    def begin(self, message: StepMessage, timeout_s: float, on_abandon: Callable[[str], None]) -> None:
        """Watch `message` from now on; `on_abandon(reason)` reports it if its process must be ended."""
        now = time.monotonic()
        with self._lock:
            self._current = _Current(message, timeout_s, now, now, on_abandon, claim_renewed=now)
        if self._pid != os.getpid():  # the thread does not survive the fork into a pool process
            self._pid = os.getpid()
            threading.Thread(target=self._watch, name="converge-step-watch", daemon=True).start()

    def end(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.finished.set()
            self._current = None

    def touch(self) -> None:
        current = self._current
        if current is not None:
            current.last_progress = time.monotonic()

    def attach(self, pgid: int) -> None:
        current = self._current
        if current is not None:
            current.groups.append(pgid)
            if current.reason is not None:  # stopped before the process even started
                _kill(pgid)

    @property
    def reason(self) -> str | None:
        """Why the current step must stop (`cancelled`, `timed_out` or `cut_off`), or None."""
        current = self._current
        return None if current is None else current.reason

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_S)
            current = self._current
            if current is None or current.reason is not None:
                continue
            now = time.monotonic()
            if self._cut_off():
                self._stop(current, "cut_off")
            elif now - current.last_progress > current.timeout_s:
                self._stop(current, "timed_out")
            elif now - current.started >= POLL_S and self._cancel_requested(current.message):
                self._stop(current, "cancelled")
            elif now - current.claim_renewed > self._claim_ttl_s / 4:
                self._renew_claim(current, now)

    def _cancel_requested(self, message: StepMessage) -> bool:
        try:
            found = bool(self._client().exists(names.cancel_key(message.step_id, message.attempt)))
        except redis.RedisError as exc:
            if self._redis_ok:  # once per outage, not every poll
                log.warning("cannot look for cancellation of %s: %s", message.step_id, exc)
            self._redis_ok = False
            return False
        self._redis_ok = True
        return found

    def _renew_claim(self, current: _Current, now: float) -> None:
        """A step may run longer than the broker's visibility timeout: while it runs, its claim stays, so
        the copy kombu delivers again after that timeout is dropped rather than run a second time."""
        message = current.message
        try:
            key = names.claim_key(message.step_id, message.attempt)
            self._client().pexpire(key, int(self._claim_ttl_s * 1000))
            current.claim_renewed = now
        except redis.RedisError as exc:
            log.warning("cannot renew the claim of %s: %s", message.step_id, exc)

    def _stop(self, current: _Current, reason: str) -> None:
        log.warning("stopping step %s: %s", current.message.step_id, reason)
        current.reason = reason
        for pgid in current.groups:
            _kill(pgid)
        if not current.finished.wait(GRACE_S):
            # The step ignores its context and holds this process: report, then end the process.
            current.on_abandon(reason)
            os._exit(70)


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

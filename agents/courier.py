"""The agent main process's courier: it sends what the outbox holds and reports steps whose process died.

A pool process sends its own reports at once; the courier sends what it could not (Redis down, a partition,
a crash between writing and sending), oldest first, backing off while Redis cannot be reached. It also
watches the journal of running steps: an attempt whose pool process is gone (killed by the OOM killer, say),
or that a previous run of the agent left behind, has its process groups ended and is reported `failed` as
lost, so that the engine's retry policy decides at once instead of after the no-progress timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading

import redis

from agents.outbox import Running, process_start
from agents.reporter import Reporter
from common import names
from common.models import AGENT_SEQ, StepMessage

log = logging.getLogger("converge.agent")

POLL_S = 0.5
MAX_BACKOFF_S = 5.0
# A pool process sends its own report right after writing it; the courier leaves it that long to do so.
GRACE_S = 1.0


class Courier:
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter  # the pool processes' own, used from the main process
        self.outbox = reporter.outbox
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-courier", daemon=True)
        self._backoff_s = 0.0
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:  # not started when the worker failed before it was ready
            self._thread.join(timeout=10)

    def wake(self) -> None:
        """Send now (the connection is back), whatever the backoff said."""
        self._backoff_s = 0.0
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the courier must outlive anything: the outbox keeps what it holds
                log.exception("courier pass failed; trying again")
            self._wake.wait(max(POLL_S, self._backoff_s))
            self._wake.clear()

    def run_once(self) -> int:
        """One pass: report lost attempts, then send what waits. Returns the number of reports sent."""
        for running in self.outbox.running():
            why = self._lost(running)
            if why is not None:
                self._report_lost(running, why)
        return self.send()

    def send(self, older_than_s: float = GRACE_S) -> int:
        """Send what the outbox holds, oldest first, leaving alone what pool processes are sending now."""
        sent = 0
        while not self._stop.is_set():
            batch = self.outbox.pending(older_than_s=older_than_s)
            if not batch:
                break
            try:
                pipe = self.reporter.client.pipeline(transaction=False)
                for entry in batch:
                    pipe.xadd(names.STATUS_STREAM, self.reporter.entry(entry.event))
                pipe.execute()
            except redis.RedisError as exc:
                self._backoff_s = min(MAX_BACKOFF_S, max(POLL_S, self._backoff_s * 2))
                if not self._failing:
                    log.warning("cannot send %d kept reports yet (%s); trying again", len(batch), exc)
                self._failing = True
                break
            self.outbox.sent([entry.id for entry in batch])
            sent += len(batch)
            if self._failing:
                log.info("Redis is back: sending the reports kept while it could not be reached")
            self._failing = False
            self._backoff_s = 0.0
        return sent

    def _lost(self, running: Running) -> str | None:
        """Why an attempt in the journal is no longer running, or None while it is."""
        if running.run != self.outbox.run_id:
            return "the agent restarted while it ran"
        if process_start(running.pid) != running.pid_start:
            return f"its pool process {running.pid} died (killed by a signal, or by the OOM killer)"
        return None

    def _report_lost(self, running: Running, why: str) -> None:
        message = running.message
        for pgid, started in running.groups:
            _end_group(pgid, started)
        if self._kept(message):  # it ended, and died before clearing its slot: the report goes out
            self.outbox.clear(running)
            return
        error = f"worker lost: {why}"
        log.warning("step %s attempt %d: %s", message.step_id, message.attempt, error)
        self.reporter.final(message, AGENT_SEQ, "failed", error=error, retryable=True, lost=True)
        self.outbox.clear(running)

    def _kept(self, message: StepMessage) -> bool:
        """Whether the outbox holds how this attempt ended."""
        for entry in self.outbox.pending_for(message.step_id):
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(entry.event).get("attempt") == message.attempt:
                    return True
        return False


def _end_group(pgid: int, started: str) -> None:
    """Kill a process group a lost step started, unless its id now names another process.

    While a group has members, Linux does not hand its id to a new process; a live process with that id
    and another start time means the group is gone and the id reused.
    """
    now = process_start(pgid)
    if now is not None and now != started:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

"""What the agent must not forget: reports not yet on the status stream, and the steps it is running.

A small SQLite database in the agent's state folder, shared by the agent's main process and its pool
processes (each opens its own connection after the fork):

- `outbox`: how an attempt ended, when the stream could not take it at once (Redis down, a partition). It
  is sent again by the main process, with backoff, also after a restart; an attempt whose process died
  before its report went out is still in `running`, and reported lost. The engine's ingestion is
  idempotent per step, attempt and sequence number, so a report sent twice changes nothing.
- `running`: the step attempts this agent runs, with the pool process running each and the process groups
  it started. The main process ends and reports as lost an attempt whose pool process died (the OOM
  killer), and, after a restart, every attempt its previous run left behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.models import StepMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    event TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outbox_step ON outbox (step_id);
CREATE TABLE IF NOT EXISTS running (
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL,
    run TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    started REAL NOT NULL,
    PRIMARY KEY (step_id, attempt)
);
"""


@dataclass(frozen=True)
class Pending:
    """A report waiting to be sent."""

    id: int
    step_id: str
    event: str


@dataclass(frozen=True)
class Running:
    """A step attempt as the journal knows it: the pool process running it and the groups it started."""

    message: StepMessage
    run: str
    pid: int
    pid_start: str
    groups: list[tuple[int, str]]


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), or None if there is no such live
    process. With the pid, it names a process for good: a pid reused later has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":  # a zombie: dead, waiting to be reaped
        return None
    return fields[19].decode()


class Outbox:
    """One per agent state folder. Safe to use from several threads of a process and across a fork."""

    def __init__(self, path: Path | str, run_id: str) -> None:
        self.path = path = Path(path)
        # The agent's run (its main process) that owns new `running` rows; rows of other runs are leftovers.
        self.run_id = run_id
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._started = (0, "")  # (pid, its start time) of the process that journals
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                self._conn = _connect(self.path)
                self._pid = os.getpid()
            with self._conn:  # one transaction: committed on success, rolled back on an exception
                yield self._conn

    # -- the pool process's side -------------------------------------------------------------------------

    def begin(self, message: StepMessage) -> None:
        """Journal a step attempt this process is about to start."""
        pid = os.getpid()
        if self._started[0] != pid:  # a process's start time does not change: read /proc once
            self._started = (pid, process_start(pid) or "")
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO running (step_id, attempt, message, run, pid, pid_start, started)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message.step_id,
                    message.attempt,
                    message.model_dump_json(),
                    self.run_id,
                    pid,
                    self._started[1],
                    time.time(),
                ),
            )

    def attach(self, message: StepMessage, pgid: int) -> None:
        """Journal a process group the step started, so that it can be ended if this process dies."""
        started = process_start(pgid) or ""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT groups FROM running WHERE step_id = ? AND attempt = ?",
                (message.step_id, message.attempt),
            ).fetchone()
            if row is not None:
                groups = [*json.loads(row[0]), [pgid, started]]
                conn.execute(
                    "UPDATE running SET groups = ? WHERE step_id = ? AND attempt = ?",
                    (json.dumps(groups), message.step_id, message.attempt),
                )

    def forget(self, message: StepMessage) -> None:
        """Stop journaling the attempt: it did not start here after all (another delivery had it), or the
        stream has how it ended."""
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM running WHERE step_id = ? AND attempt = ?", (message.step_id, message.attempt)
            )

    def finish(self, message: StepMessage, event: str) -> int:
        """The attempt ended with `event`: keep it to send, and stop journaling the attempt, together."""
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM running WHERE step_id = ? AND attempt = ?", (message.step_id, message.attempt)
            )
            return self._put(conn, message.step_id, message.attempt, event)

    def put(self, step_id: str, attempt: int, event: str) -> int:
        with self._tx() as conn:
            return self._put(conn, step_id, attempt, event)

    def _put(self, conn: sqlite3.Connection, step_id: str, attempt: int, event: str) -> int:
        cursor = conn.execute(
            "INSERT INTO outbox (step_id, attempt, event, created) VALUES (?, ?, ?, ?)",
            (step_id, attempt, event, time.time()),
        )
        return int(cursor.lastrowid or 0)

    def sent(self, ids: list[int]) -> None:
        if ids:
            with self._tx() as conn:
                conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def pending_for(self, step_id: str) -> list[Pending]:
        """The reports of one step still to be sent, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, step_id, event FROM outbox WHERE step_id = ? ORDER BY id", (step_id,)
            ).fetchall()
        return [Pending(*row) for row in rows]

    # -- the main process's side -------------------------------------------------------------------------

    def pending(self, older_than_s: float = 0.0, limit: int = 500) -> list[Pending]:
        """Reports still to be sent, oldest first; a pool process sends its own at once, so the main
        process leaves the youngest alone for a moment."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, step_id, event FROM outbox WHERE created <= ? ORDER BY id LIMIT ?",
                (time.time() - older_than_s, limit),
            ).fetchall()
        return [Pending(*row) for row in rows]

    def running(self) -> list[Running]:
        with self._tx() as conn:
            rows = conn.execute("SELECT message, run, pid, pid_start, groups FROM running").fetchall()
        return [
            Running(
                StepMessage.model_validate_json(message),
                run,
                pid,
                pid_start,
                [(int(g), str(s)) for g, s in json.loads(groups)],
            )
            for message, run, pid, pid_start, groups in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level="DEFERRED", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a crash of any process (what the outbox is for); only a power cut may
    # lose the last commits, and the engine's heartbeat watch covers that case.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn

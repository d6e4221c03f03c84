"""What the agent must not forget: reports not yet on the status stream, and the steps it is running.

Both live in the agent's state folder and are shared by the agent's main process and its pool processes:

- `outbox` (a small SQLite database): how an attempt ended, when the stream could not take it at once
  (Redis down, a partition). It is sent again by the main process, with backoff, also after a restart;
  the engine's ingestion is idempotent per step, attempt and sequence number, so a report sent twice
  changes nothing.
- The journal of running attempts: a slot file per pool process (`running/RUN-PID-START.json`), holding
  the attempt that process runs and the process groups it started, as one JSON line (or an empty line:
  none). A pool process runs one step at a time, so its slot is overwritten in place with one `pwrite`
  per change, where a database row cost two transactions per step on the hot path. Like SQLite with
  `synchronous=NORMAL`, it survives the death of any process (the page cache has it), not a power cut.
  The main process ends and reports as lost an attempt whose pool process died (the OOM killer), and,
  after a restart, every attempt its previous run left behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
"""
SLOTS = "running"  # the folder of the pool processes' slot files, beside the outbox


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
    slot: Path | None = None  # the slot file it was read from


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


def _new_lock(kept: weakref.ref[Outbox]) -> None:
    outbox = kept()
    if outbox is not None:
        outbox._lock = threading.Lock()


class Outbox:
    """One per agent state folder. Safe to use from several threads of a process and across a fork."""

    def __init__(self, path: Path | str, run_id: str) -> None:
        self.path = path = Path(path)
        # The agent's run (its main process) that owns new slots; slots of other runs are leftovers.
        self.run_id = run_id
        self.slots = path.parent / SLOTS
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # A pool process forked while a thread of the main process (the courier) held the lock would
        # inherit it held, by a thread it does not have, and hang at its first step: a new lock in it.
        kept = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _new_lock(kept))
        self._slot: tuple[int, int] = (0, -1)  # (pid, fd) of this process's slot file
        self._current: dict[str, Any] | None = None  # what the slot holds
        self.slots.mkdir(parents=True, exist_ok=True)
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
        record = {"run": self.run_id, "message": message.model_dump(mode="json"), "groups": []}
        self._write(record)

    def attach(self, message: StepMessage, pgid: int) -> None:
        """Journal a process group the step started, so that it can be ended if this process dies."""
        current = self._current
        if current is not None and _names(current, message):
            current["groups"].append([pgid, process_start(pgid) or ""])
            self._write(current)

    def forget(self, message: StepMessage) -> None:
        """Stop journaling the attempt: it did not start here after all (another delivery had it), or the
        stream has how it ended."""
        current = self._current
        if current is not None and _names(current, message):
            self._write(None)

    def finish(self, message: StepMessage, event: str) -> int:
        """The attempt ended with `event`: keep it to send, then stop journaling the attempt. A process
        that dies between the two leaves both; the courier then sends the report rather than a loss."""
        entry = self.put(message.step_id, message.attempt, event)
        self.forget(message)
        return entry

    def _write(self, record: dict[str, Any] | None) -> None:
        """Overwrite this process's slot with one line: the record, or nothing. Whatever follows the
        first newline is what an older, longer record left: readers stop at the newline."""
        line = (b"" if record is None else json.dumps(record).encode()) + b"\n"
        with self._lock:
            pid, fd = self._slot
            if pid != os.getpid():  # a new pool process (a fork): a slot of its own
                pid = os.getpid()
                name = f"{self.run_id}-{pid}-{process_start(pid) or 0}.json"
                fd = os.open(self.slots / name, os.O_RDWR | os.O_CREAT, 0o600)
                self._slot = (pid, fd)
            os.pwrite(fd, line, 0)
            self._current = record

    def put(self, step_id: str, attempt: int, event: str) -> int:
        with self._tx() as conn:
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
        """The attempts in the slots; the empty slots of processes that are gone are removed."""
        found: list[Running] = []
        for slot in sorted(self.slots.glob("*.json")):
            run, pid, pid_start = _slot_name(slot)
            line = _first_line(slot)
            if line is None:
                continue
            if not line:
                if process_start(pid) != pid_start:  # a pool process that ended between steps
                    slot.unlink(missing_ok=True)
                continue
            try:
                record = json.loads(line)
                message = StepMessage.model_validate(record["message"])
            except (ValueError, KeyError, TypeError):  # being written now, or not a slot of ours
                continue
            groups = [(int(g), str(s)) for g, s in record.get("groups", [])]
            found.append(Running(message, run, pid, pid_start, groups, slot))
        return found

    def clear(self, running: Running) -> None:
        """The attempt of a slot whose process is gone was reported: remove the slot."""
        if running.slot is not None:
            running.slot.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            pid, fd = self._slot
            if pid == os.getpid() and fd >= 0:
                os.close(fd)
            self._slot = (0, -1)


def _names(record: dict[str, Any], message: StepMessage) -> bool:
    """Whether a slot's record is of this step attempt."""
    held = record["message"]
    return bool(held["step_id"] == message.step_id and held["attempt"] == message.attempt)


def _slot_name(slot: Path) -> tuple[str, int, str]:
    """The run, pid and process start time a slot file is named by (RUN-PID-START.json)."""
    parts = slot.stem.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return slot.stem, 0, ""
    return parts[0], int(parts[1]), parts[2]


def _first_line(slot: Path) -> str | None:
    try:
        data = slot.read_bytes()
    except OSError:
        return None
    return data.split(b"\n", 1)[0].decode(errors="replace")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level="DEFERRED", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a crash of any process (what the outbox is for); only a power cut may
    # lose the last commits, and the engine's heartbeat watch covers that case.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn

"""The settings a step reads, shared with the pool processes so that they follow a live change.

The pool processes are forked from the agent's main process; a setting changed there after the fork (by a
`converge-agent config set` the agent picked up, agents.live) would not reach them. These few live in
memory shared across the fork instead, written by the main process and read by a pool process at the start
of each step: its roles (a step of a role the agent no longer has is refused), its no-progress timeout, its
progress interval and its log level.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
from dataclasses import asdict, dataclass, field

SIZE = 16 * 1024  # bytes: far more than a few hundred roles' names


@dataclass(frozen=True)
class StepSettings:
    roles: list[str] = field(default_factory=list)
    step_timeout_s: float = 3600.0
    progress_interval_s: float = 0.5
    loglevel: str = "INFO"


class SharedStepSettings:
    """One `StepSettings` in shared memory: `write` in the main process, `read` in any process forked after
    this object was made. Reads and writes take the same lock, so a reader never sees half a write."""

    def __init__(self, initial: StepSettings) -> None:
        self._lock = multiprocessing.Lock()
        self._buffer = multiprocessing.RawArray(ctypes.c_char, SIZE)
        self.write(initial)

    def write(self, values: StepSettings) -> None:
        data = json.dumps(asdict(values)).encode()
        if len(data) >= SIZE:
            raise ValueError(f"the step settings take {len(data)} bytes, more than the {SIZE} shared")
        with self._lock:
            self._buffer.value = data

    def read(self) -> StepSettings:
        with self._lock:
            data = self._buffer.value
        return StepSettings(**json.loads(data))

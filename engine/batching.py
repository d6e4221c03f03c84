"""When the ingester waits a moment for more status events: pure logic, no I/O.

Recording a batch has a fixed cost (a transaction of a few statements) that dwarfs the cost per event, so
a busy stream is best recorded in batches of many events. More events are coming soon while several of
the steps the engine published have not ended: a read then waits `LINGER_S` for more before recording.
With one step out at a time (a chain of dependent steps, one small workflow) the ingester never waits:
the next step is published only once this one's end is recorded, and a wait would add to every link.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from common.models import FINISHED_STEP, StatusEvent, StepMessage

LINGER_S = 0.015
LINGER_MIN_READ = 3  # a read of this many events says the stream is busy, whatever is out
LINGER_MIN_OUT = 4  # published attempts whose end has not been read
TRACKED_MAX = 100_000  # attempts tracked at most: past it, tracking starts again


class Outstanding:
    """The step attempts the dispatcher published and whose end the ingester has not read yet.

    An estimate, kept in memory: an attempt cancelled before it started, dropped, or ended as another
    engine read, stays until the stream is idle for a whole read; meanwhile it only makes a read wait a
    few milliseconds for nothing. Used from the API's threads and the ingester's.
    """

    def __init__(self) -> None:
        self._out: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._out)

    def published(self, messages: Iterable[StepMessage]) -> None:
        with self._lock:
            if len(self._out) >= TRACKED_MAX:
                self._out.clear()
            self._out.update((m.step_id, m.attempt) for m in messages if m.mode == "apply")

    def saw(self, events: Iterable[StatusEvent]) -> None:
        ended = [(ev.step_id, ev.attempt) for ev in events if ev.state in FINISHED_STEP]
        if ended:
            with self._lock:
                self._out.difference_update(ended)

    def idle(self) -> None:
        """Nothing came for a whole read: whatever is tracked is not about to report."""
        with self._lock:
            self._out.clear()


def linger(read: int, batch: int, out: int) -> bool:
    """Whether to wait for more events before recording the `read` just read (at most `batch`)."""
    if read == 0 or read >= batch:
        return False
    return read >= LINGER_MIN_READ or out >= LINGER_MIN_OUT

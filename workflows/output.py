"""A step's output: what its command wrote on stdout and stderr, interleaved, each line with its time and its
stream, bounded to the last OUTPUT_BYTES. Pure: the `command` kind feeds it, the agent sends it with the
step's final report, the engine stores it, and `converge workflows logs` shows it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

OUTPUT_BYTES = 64 * 1024
"""The most of a step's output kept: the last lines that fit; `cut_bytes` says how much was dropped."""
MAX_LINE_BYTES = 8 * 1024
"""A longer line (a progress bar redrawn with `\\r`, a binary blob) is kept as pieces of this size."""
STREAMS = ("out", "err")


class Output:
    """Lines as they arrive from the streams; a partial line waits for its end (or `close`)."""

    def __init__(self, limit: int = OUTPUT_BYTES) -> None:
        self.limit = limit
        self.lines: deque[tuple[float, str, str]] = deque()
        self.size = 0
        self.cut_bytes = 0
        self._partial: dict[str, bytes] = dict.fromkeys(STREAMS, b"")

    def add(self, stream: str, chunk: bytes, at: float | None = None) -> None:
        """What `stream` ("out" or "err") wrote, as read from its pipe."""
        when = time.time() if at is None else at
        pending = self._partial[stream] + chunk
        *complete, rest = pending.split(b"\n")
        for line in complete:
            self._keep(when, stream, line)
        while len(rest) > MAX_LINE_BYTES:
            self._keep(when, stream, rest[:MAX_LINE_BYTES])
            rest = rest[MAX_LINE_BYTES:]
        self._partial[stream] = rest

    def close(self, at: float | None = None) -> None:
        """The streams ended: keep what each wrote after its last newline."""
        for stream in STREAMS:
            if self._partial[stream]:
                self._keep(time.time() if at is None else at, stream, self._partial[stream])
                self._partial[stream] = b""

    def _keep(self, at: float, stream: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        self.lines.append((at, stream, text))
        self.size += len(line) + 1
        while self.size > self.limit and self.lines:
            _, _, dropped = self.lines.popleft()
            cost = len(dropped.encode()) + 1
            self.size -= cost
            self.cut_bytes += cost

    def hiding(self, values: Iterable[str], mask: str) -> Output:
        """The same output with each of `values` (a credential's) replaced by `mask`."""
        secrets = [v for v in values if v]
        if secrets:
            hidden: deque[tuple[float, str, str]] = deque()
            for at, stream, text in self.lines:
                for value in secrets:
                    text = text.replace(value, mask)
                hidden.append((at, stream, text))
            self.lines = hidden
        return self

    def document(self) -> dict[str, Any]:
        """As it travels and is stored: `{"lines": [[at, stream, text], ...], "cut_bytes": N}`."""
        return {
            "lines": [[round(at, 3), stream, text] for at, stream, text in self.lines],
            "cut_bytes": self.cut_bytes,
        }


def tail(document: dict[str, Any] | None, count: int) -> list[str]:
    """The last `count` lines of a stored output, as text (stderr lines marked)."""
    if not document:
        return []
    return [_line(stream, text) for _, stream, text in document.get("lines", [])[-count:]]


def _line(stream: str, text: str) -> str:
    return f"[err] {text}" if stream == "err" else text

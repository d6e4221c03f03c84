"""What a step sees while it runs: progress reporting, and (later) cancellation and credentials."""

from __future__ import annotations

from typing import Protocol


class StepContext(Protocol):
    """Handed to a provider's `check` and `apply`."""

    @property
    def step_id(self) -> str: ...

    def progress(self, percent: float | None, message: str | None = None) -> None:
        """Report that the step is alive and how far it got (0-100, or None when unknown)."""

    def log(self, message: str) -> None:
        """A line for the agent's log."""


class NullContext:
    """A context that records progress in memory: for tests and for running a provider by hand."""

    def __init__(self, step_id: str = "local") -> None:
        self._step_id = step_id
        self.reports: list[tuple[float | None, str | None]] = []
        self.lines: list[str] = []

    @property
    def step_id(self) -> str:
        return self._step_id

    def progress(self, percent: float | None, message: str | None = None) -> None:
        self.reports.append((percent, message))

    def log(self, message: str) -> None:
        self.lines.append(message)

"""What Celery, and so Flower, is told of a step once its outcome is reported: the truth, not SUCCESS.

Converge reports a step's outcome through its status stream (agents.reporter); Celery's own view of the
task only feeds its task events, which Flower shows. After the report, the task ends with the exception
Celery maps to the matching event, each handled by the worker so that delivery stays as it is: the message
is acknowledged (late ack, `task_acks_on_failure_or_timeout`), never re-delivered, and no Celery retry is
scheduled, since no result backend and no `Task.retry` are involved.

- a step that failed or timed out: StepFailed, a `task-failed` event with the error (FAILURE);
- a failed step its retry policy runs again: Celery's Retry, a `task-retried` event (RETRY); raising it
  does not publish anything (only `Task.retry` does), the engine's next attempt is a task of its own;
- a cancelled step: billiard's Terminated, which the worker announces as `task-revoked` (REVOKED).
"""

from __future__ import annotations

from dataclasses import dataclass

from billiard.exceptions import Terminated
from celery.exceptions import Retry


class StepFailed(Exception):
    """The step failed (or timed out); its outcome is already reported. Raised for Celery's task events."""


class StepCancelled(Terminated):  # type: ignore[misc]
    """The step was cancelled; its outcome is already reported. The worker announces it as revoked."""


# Raised from the step task on purpose: Celery logs them at INFO, without a traceback (Task.throws).
EXPECTED = (StepFailed, StepCancelled, Retry)


@dataclass(frozen=True)
class Ended:
    """How a delivered step ended, once reported: its state, its error, and whether it runs again."""

    state: str
    error: str = ""
    again: bool = False


def tell(ended: Ended | None) -> None:
    """End the step task as Flower should show it: return for a success, else raise. None: nothing ran."""
    if ended is None or ended.state == "succeeded":
        return
    if ended.state == "cancelled":
        raise StepCancelled(ended.error or "cancelled")
    failure = StepFailed(f"{ended.state}: {ended.error}" if ended.error else ended.state)
    if ended.again:
        raise Retry(message=f"the engine runs it again: {failure}", exc=failure)
    raise failure

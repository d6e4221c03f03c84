"""The store's contract. The engine is its only writer; the API reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from common.models import StatusEvent, StepMessage, WorkflowState, WorkflowView

if TYPE_CHECKING:
    from workflows.plan import WorkflowPlan


@dataclass
class RecordResult:
    """What recording a batch of status events did."""

    ready: list[StepMessage] = field(default_factory=list)  # steps released, now `queued`: publish them
    finished: list[str] = field(default_factory=list)  # workflows that reached a final state
    applied: int = 0
    stale: int = 0  # events of an attempt that is no longer current
    duplicate: int = 0  # events already recorded (same step, attempt and sequence number)
    retrying: int = 0  # failed steps scheduled for another attempt
    to_stop: list[tuple[str, int]] = field(default_factory=list)  # attempts the agents must stop (abort)


@dataclass
class Created:
    """What submitting a planned workflow did: stored it, or found one converging to the same state."""

    workflow_id: str  # the new workflow, or the active one with the same digest
    created: bool
    ready: list[StepMessage] = field(default_factory=list)  # the new workflow's first steps: publish them


@dataclass
class StopResult:
    """What cancelling (or aborting) a workflow asks of the agents: stop or drop these step attempts."""

    to_stop: list[tuple[str, int]] = field(default_factory=list)


class StaleStep(NamedTuple):
    """A running step as the watchdog sees it."""

    id: str
    workflow_id: str
    attempt: int
    agent: str | None
    last_report_at: float | None
    timeout_s: float | None
    workflow_state: WorkflowState


@dataclass(frozen=True)
class TokenRecord:
    """An operator token as stored: its name and role, never the token (the store keeps only its hash)."""

    name: str
    role: str
    created_at: float
    last_used_at: float | None


class Store(Protocol):
    def create_workflow(self, plan: WorkflowPlan, source: str) -> Created:
        """Persist a planned workflow, its first steps marked `queued`; unless a workflow converging to the
        same desired state (the same digest) is still pending or running: then return that one, not created.

        Atomic: two identical submissions at once make one workflow, also from two processes.
        """

    def active_by_digest(self, digest: str) -> str | None:
        """The id of the pending or running workflow converging to the same desired state, if any."""

    def workflow(self, workflow_id: str, *, steps: bool = True) -> WorkflowView | None: ...

    def workflows(
        self, *, history: bool = False, state: WorkflowState | None = None, limit: int = 500
    ) -> list[WorkflowView]: ...

    def record(self, events: list[StatusEvent]) -> RecordResult:
        """Apply status events in one transaction; idempotent per step, attempt and sequence number."""

    def cancel(self, workflow_id: str) -> StopResult:
        """Move a workflow to `cancelling`; raises Refused if it already finished."""

    def retry(self, workflow_id: str) -> list[StepMessage]:
        """Run again every step of a failed, aborted or cancelled workflow that has not succeeded."""

    def due_retries(self, now: float) -> list[StepMessage]:
        """Steps whose retry backoff has passed, marked `queued`."""

    def started(self) -> list[StaleStep]: ...

    def prune(self, finished_before: float) -> int:
        """Delete history older than a time; returns the number of workflows deleted."""

    def queued(self) -> list[StepMessage]:
        """Every step marked `queued`: re-published when the engine starts (a crash may have lost them)."""

    def running_by_agent(self) -> dict[str, int]: ...

    def create_token(self, name: str, role: str, digest: str) -> TokenRecord:
        """Store a token's hash under a new name; raises Refused if the name is taken."""

    def tokens(self) -> list[TokenRecord]: ...

    def token_by_digest(self, digest: str) -> TokenRecord | None: ...

    def touch_token(self, name: str, now: float) -> None:
        """Record that a token was used (`tokens list` shows when)."""

    def revoke_token(self, name: str) -> None:
        """Delete a token for good; raises NotFound if there is none of that name."""

    def close(self) -> None: ...

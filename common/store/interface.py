"""The store's contract. The engine is its only writer; the API reads it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from common.lifecycle import Roles
from common.models import (
    AdmissionState,
    StatusEvent,
    StepMessage,
    StepOutput,
    StepView,
    WorkflowState,
    WorkflowView,
)

if TYPE_CHECKING:
    from common.store.console import WorkflowFilter
    from workflows.plan import WorkflowPlan


@dataclass
class RecordResult:
    """What recording a batch of status events did."""

    ready: list[StepMessage] = field(default_factory=list)  # steps released, now `queued`: publish them
    finished: list[str] = field(default_factory=list)  # workflows that reached a final state
    applied: int = 0
    stale: int = 0  # events of an attempt that is no longer current
    duplicate: int = 0  # events already recorded (same step, attempt and sequence number)
    # events from an agent that neither holds the attempt nor may run the step (common.lifecycle.may_report)
    refused: list[StatusEvent] = field(default_factory=list)
    retrying: int = 0  # failed steps scheduled for another attempt
    to_stop: list[tuple[str, int]] = field(default_factory=list)  # attempts the agents must stop (abort)


@dataclass
class Created:
    """What submitting a planned workflow did: stored it, or found one converging to the same state."""

    workflow_id: str  # the new workflow, or the active one with the same digest
    created: bool
    # The new workflow's first steps, to publish; made as they are read, so that the first ones go out
    # while the rest are still being made: read them once.
    ready: Iterable[StepMessage] = ()


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


@dataclass(frozen=True)
class EnrollmentRecord:
    """An agent's enrollment: the id and roles it asks for, the public key it proves them with, what it told
    of its host, and the operator's decision (`pending`, `admitted`, `denied` or `revoked`)."""

    id: str
    roles: list[str]
    public_key: str
    capabilities: dict[str, Any]
    state: AdmissionState
    created_at: float
    updated_at: float  # when its state last changed
    last_seen_at: float  # its last enrollment or status request


@dataclass(frozen=True)
class CredentialRecord:
    """A credential in the vault as `credentials list` shows it: its name and dates, never its value."""

    name: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class AuditEntry:
    """One credential handed out (`granted`) or refused, and to whom; name, step, attempt and epoch are
    None for a request refused before its body was read (a token of the wrong kind)."""

    at: float
    agent: str
    outcome: str
    name: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    epoch: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PolicyRecord:
    """One key of a role's policy (common.policy): its value (JSON), and who set it when."""

    role: str
    key: str
    value: Any
    set_by: str
    set_at: float


@dataclass(frozen=True)
class ScheduleRecord:
    """A desired state checked again at an interval, and what its last check found (engine.compliance)."""

    name: str
    source: str
    filename: str
    every_s: float
    mode: str  # `report` or `enforce`
    set_by: str
    set_at: float
    next_at: float
    checked_at: float | None
    state: str  # `pending` (not checked yet), `compliant`, `drifted`, `error`
    report: list[dict[str, Any]]  # the drifted resources: {resource, agent, action, diff, since}
    error: str | None
    workflow_id: str | None


class StepHolder(NamedTuple):
    """What the engine checks before it hands a running step a credential (engine.vault_rules)."""

    id: str
    state: str
    agent: str | None
    attempt: int
    epoch: int
    credentials: list[str]


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

    def workflow_page(
        self, where: WorkflowFilter, *, limit: int, offset: int = 0
    ) -> tuple[list[WorkflowView], int]:
        """One page of the workflows `where` selects, newest first, and how many it selects (the console)."""
        ...

    def step_page(
        self, workflow_id: str, *, limit: int, offset: int = 0
    ) -> tuple[list[tuple[StepView, list[str]]], dict[str, int]]:
        """One page of a workflow's steps with their `depends_on`, and its step counts by state."""
        ...

    def outputs_of(self, workflow_id: str, step_ids: list[str]) -> dict[str, StepOutput]:
        """What the given steps of a workflow wrote, by step id (the console's failed steps of a page)."""
        ...

    def outputs(self, workflow_id: str) -> dict[str, StepOutput]:
        """What each finished step of a workflow wrote (its last finished attempt), by step id."""
        ...

    def record(self, events: list[StatusEvent], roles: Mapping[str, Roles] | None = None) -> RecordResult:
        """Apply status events in one transaction; idempotent per step, attempt and sequence number.

        `roles` maps an event's agent to the roles it may report on (common.lifecycle.may_report); an agent
        it does not name may report on any role (the engine's own verdicts, a unit test)."""

    def cancel(self, workflow_id: str) -> StopResult:
        """Move a workflow to `cancelling`; raises Refused if it already finished."""

    def retry(self, workflow_id: str) -> list[StepMessage]:
        """Run again every step of a failed, aborted or cancelled workflow that has not succeeded."""

    def due_retries(self, now: float) -> list[StepMessage]:
        """Steps whose retry backoff has passed, marked `queued`."""

    def started(self) -> list[StaleStep]: ...

    def workflow_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """The ids of workflows (active or in history) that start with `prefix`, in order, at most `limit`."""
        ...

    def count_workflows(self, *, history: bool, finished_before: float | None = None) -> int:
        """How many workflows are in history (or not); only those finished before a time, if one is given."""
        ...

    def prune(self, finished_before: float) -> int:
        """Delete history older than a time; returns the number of workflows deleted."""

    def prune_unsucceeded(self, finished_before: float) -> int:
        """Delete failed, aborted and cancelled workflows finished before a time, with their steps and
        outputs; returns the number of workflows deleted."""

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

    def enroll(self, record: EnrollmentRecord) -> EnrollmentRecord:
        """Store a new enrollment; an enrollment of that id with the same key is returned unchanged (an agent
        may enroll again). One with another key raises Refused, unless it was revoked (a rebuilt host): then
        the new one replaces it."""

    def enrollment(self, agent_id: str) -> EnrollmentRecord | None: ...

    def enrollments(self) -> list[EnrollmentRecord]: ...

    def set_enrollment_state(self, agent_id: str, state: AdmissionState, now: float) -> None:
        """Record the operator's decision; raises NotFound if the agent never enrolled."""

    def saw_enrollment(self, agent_id: str, now: float) -> None:
        """Record that the agent asked for its status (`agents list` shows when)."""

    def put_credential(self, name: str, ciphertext: str, now: float) -> bool:
        """Store a credential's encrypted value, replacing any; True if the name is new."""

    def credential_ciphertext(self, name: str) -> str | None: ...

    def credential_records(self) -> list[CredentialRecord]: ...

    def delete_credential(self, name: str) -> None:
        """Delete a credential for good; raises NotFound if there is none of that name."""

    def step_holder(self, step_id: str) -> StepHolder | None: ...

    def step_counts(self) -> dict[tuple[str, str], int]:
        """How many steps the store holds, by (state, kind)."""

    def workflow_counts(self) -> dict[str, int]:
        """How many workflows the store holds, by state."""

    def step_durations(self, bounds: Sequence[float]) -> dict[tuple[str, str], tuple[list[int], int, float]]:
        """Finished steps by (kind, state): cumulative counts at most each bound (s), count, sum (s)."""

    def audit(self, entry: AuditEntry) -> None:
        """Record a credential handed out or refused."""

    def audit_entries(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first (of one credential when `name` is given)."""

    def set_policy(self, role: str, values: Mapping[str, Any], set_by: str, now: float) -> None:
        """Set keys of a role's policy, replacing their earlier values; the others stay."""

    def policies(self, role: str | None = None) -> list[PolicyRecord]:
        """Every key of every policy (of one role when `role` is given), by role and key."""

    def unset_policy(self, role: str, keys: list[str] | None = None) -> list[str]:
        """Remove keys of a role's policy (every key when none are given); the keys that were there."""

    def set_schedule(self, record: ScheduleRecord) -> bool:
        """Store a schedule, replacing one of the same name; True if it replaced one."""

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule; False if there was none of that name."""

    def claim_due(self, now: float) -> list[ScheduleRecord]:
        """The schedules due at `now`, each moved to its next time in the same transaction: whichever
        engine claims one checks it, and no other does."""

    def save_check(
        self,
        name: str,
        state: str,
        report: list[dict[str, Any]],
        error: str | None,
        workflow_id: str | None,
        now: float,
    ) -> None:
        """Record the outcome of a schedule's check (nothing if it was removed since)."""

    def ping(self) -> None:
        """Run a trivial query (`SELECT 1`): returns when the store answers, raises when it does not. For
        the engine's readiness (`GET /v1/ready`): it proves a connection can be had, nothing more."""

    def close(self) -> None: ...

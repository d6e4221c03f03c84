"""Pydantic models of what crosses a process boundary: step messages, status events, views.

Step messages go from the engine to the agents through Celery (JSON), status events come back on a Redis
stream, views are what the API returns and the CLI prints (`--json` fields of CLI.md).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common import defaults


class WorkflowState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never ran: a step it depends on did not succeed before its workflow ended


FINISHED_WORKFLOW = frozenset(
    {WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.ABORTED, WorkflowState.CANCELLED}
)
FINISHED_STEP = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.TIMED_OUT, StepState.CANCELLED, StepState.SKIPPED}
)
ACTIVE_STEP = frozenset({StepState.QUEUED, StepState.STARTED})

Mode = Literal["apply", "check"]
Action = Literal["create", "update", "none"]


class StepMessage(BaseModel):
    """What the engine publishes for one step. Never a secret: credentials are names only."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    step_id: str
    resource: str
    attempt: int = 1
    epoch: int = 0
    kind: str
    name: str
    role: str
    scope: str | None = None
    spec: dict[str, Any]
    mode: Mode = "apply"
    credentials: list[str] = Field(default_factory=list)
    # The no-progress timeout of this step; None: the agent's own `step_timeout_s`.
    timeout_s: float | None = None
    # How many attempts its retry policy allows: the agent tells Celery (and Flower) whether a failed
    # attempt runs again (agents.verdicts).
    retry_attempts: int = 1
    reply_to: str | None = None

    @classmethod
    def from_plan(cls, step: BaseModel, workflow_id: str, **extra: Any) -> StepMessage:
        """The message of a planned step (a `workflows.plan.StepPlan`): each field the plan has (see
        STEP_SOURCES); `extra` sets the others (`mode`, `reply_to`)."""
        planned = dict(step)
        values = {field: planned[source] for field, source in STEP_SOURCES if source in planned}
        return cls(**values, workflow_id=workflow_id, **extra)


# Where each field of a step message comes from in a planned step or a stored row: the field of the same
# name, but `step_id`, which is the step's `id`.
STEP_SOURCES: tuple[tuple[str, str], ...] = tuple(
    (field, "id" if field == "step_id" else field) for field in StepMessage.model_fields
)


# Sequence numbers of the reports an agent's own run did not write: the main process's report of an attempt
# whose pool process died, and the engine's verdicts (a timeout, a lost agent). They come after anything the
# step itself could still send for that attempt, so a late report of it is recorded as a duplicate.
AGENT_SEQ = 2**31 - 2
ENGINE_SEQ = 2**31 - 1


class StatusEvent(BaseModel):
    """One report of an agent on one step attempt; `seq` orders the reports of that attempt."""

    workflow_id: str
    step_id: str
    attempt: int
    seq: int
    state: StepState | Literal["progress"]
    agent: str
    at: datetime
    epoch: int = 0
    changed: bool | None = None
    progress: float | None = None
    message: str | None = None
    error: str | None = None
    # For `failed`: False when a retry cannot help (bad spec, permission denied).
    retryable: bool | None = None
    # For `failed`: the attempt was lost with its worker (a killed pool process, an agent that died or was
    # cut off), it did not fail by itself: the next attempt, if the retry policy allows one, is due at once.
    lost: bool | None = None
    # With the final report: what the step's command wrote (workflows.output: `{"lines", "cut_bytes"}`).
    output: dict[str, Any] | None = None


class Change(BaseModel):
    """What a provider observed: the action `apply` would take and a human-readable diff."""

    action: Action
    diff: str = ""


class CheckResult(BaseModel):
    """An agent's answer to a check-mode step (a `plan`)."""

    step_id: str
    resource: str
    agent: str
    change: Change | None = None
    error: str | None = None
    # Set by the engine for a resource with `on_change`: whether it would run, and because of what.
    note: str | None = None


class StepView(BaseModel):
    id: str
    resource: str
    role: str
    # The agent the step is pinned to (`scope`), if any.
    scope: str | None = None
    state: StepState
    attempt: int
    # The fencing epoch of the role's leadership the attempt ran under (0: not fenced, or not started).
    epoch: int = 0
    changed: bool | None
    agent: str | None
    progress: float | None
    message: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class StepOutput(BaseModel):
    """What a step's command wrote: `[at, stream ("out" | "err"), text]` lines, the last 64 KB of them, and
    how many bytes before them were cut; from the step's last finished attempt."""

    attempt: int
    lines: list[tuple[float, str, str]] = Field(default_factory=list)
    cut_bytes: int = 0


class StepLog(BaseModel):
    """One step's output, as `converge workflows logs` shows it."""

    id: str
    resource: str
    state: StepState
    output: StepOutput | None = None


class WorkflowView(BaseModel):
    id: str
    name: str
    state: WorkflowState
    created_at: datetime
    finished_at: datetime | None
    steps: list[StepView] | None = None


class HistoryCount(BaseModel):
    """What pruning history would do: how many workflows history holds, and how many of them would go."""

    history: int
    prunable: int


class AgentInfo(BaseModel):
    """What an agent announces about itself on Redis."""

    id: str
    roles: list[str]
    host: str
    pid: int
    version: str
    throttle: int
    step_timeout_s: float = defaults.STEP_TIMEOUT_S
    # The engine waits this long without a heartbeat before it holds the agent lost (None: the default).
    heartbeat_ttl_s: float | None = None
    started_at: datetime
    last_seen: datetime
    # Each extension file or package kind that did not load, and why (the agent runs the built-ins instead).
    extension_problems: list[str] = Field(default_factory=list)


AgentState = Literal["active", "backup", "unavailable", "pending", "denied"]
AdmissionState = Literal["pending", "admitted", "denied", "revoked"]


class AgentView(BaseModel):
    id: str
    roles: list[str]
    state: AgentState
    leader_of: list[str]
    # The fencing epoch of each role it leads.
    epochs: dict[str, int] = Field(default_factory=dict)
    last_seen: datetime
    running: int
    host: str
    pid: int
    version: str
    # The agent's effective settings, as it announced them (None from an engine older than these fields).
    throttle: int | None = None
    step_timeout_s: float | None = None
    # The operator's decision on its enrollment (engine.admission); None for an agent that did not enroll
    # (given its broker URL directly: the trusted path).
    admission: AdmissionState | None = None
    # Extension files and package kinds the agent could not load (agents.extensions).
    extension_problems: list[str] = Field(default_factory=list)


class EnrollRequest(BaseModel):
    """What an agent presents to enroll: its id and roles, its Ed25519 public key (PEM) and the facts it
    gathered about its host (its capability document)."""

    id: str = Field(max_length=64)
    roles: list[str] = Field(min_length=1, max_length=32)
    public_key: str = Field(max_length=1024)
    capabilities: dict[str, Any] = Field(default_factory=dict)


class StatusRequest(BaseModel):
    """An agent's "am I admitted?", signed with its key: the signature of `proof(id, at_ms)` (base64)."""

    id: str = Field(max_length=64)
    at_ms: int = Field(ge=0, lt=2**53)
    signature: str = Field(max_length=200)

    @staticmethod
    def proof(agent_id: str, at_ms: int) -> bytes:
        """What the agent signs: its id and the time, so that a captured request soon goes stale."""
        return f"{agent_id}|{at_ms}".encode()


# Where an agent keeps its Admission, in its state folder (readable by its user only).
ADMISSION_FILE = "admission.json"
# Its Ed25519 key, in the same folder: the engine makes its own agent's before starting it.
AGENT_KEY_FILE = "agent.key"


class Admission(BaseModel):
    """The engine's answer to an agent about its enrollment; once admitted, the credentials it runs with:
    its broker URL (its own Redis user), its API token, the engine's public key for signed steps, and the
    key it signs its status events with (base64; engine.eventkeys)."""

    state: AdmissionState
    message: str = ""
    broker_url: str | None = None
    api_token: str | None = None
    engine_key: str | None = None
    event_key: str | None = None

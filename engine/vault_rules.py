"""Who may have a credential: the engine hands one only to the agent running the step, for that attempt and
epoch, while the step runs, and only if the step's resource lists it. Pure rules, tested alone; engine.vault
loads the step and audits the decision.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.models import StepState
from common.store.interface import StepHolder


class CredentialRequest(BaseModel):
    """What an agent sends to fetch a credential: its name, and the step attempt that needs it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    step_id: str = Field(min_length=1, max_length=96)
    attempt: int = Field(ge=1)
    epoch: int = Field(ge=0)


def refusal(step: StepHolder | None, request: CredentialRequest, agent: str) -> str | None:
    """None if `agent` may have the credential; else the check that failed, for the agent and the audit."""
    if step is None:
        return f"no step {request.step_id}"
    if step.state != StepState.STARTED:
        return f"step {step.id} is {step.state}, not started: credentials are handed out only while it runs"
    if step.agent != agent:
        return f"step {step.id} is not running on agent {agent}"
    if request.attempt != step.attempt:
        return f"attempt {request.attempt} of step {step.id} is not its current attempt ({step.attempt})"
    if step.epoch > 0 and request.epoch != step.epoch:
        return f"epoch {request.epoch} is not the epoch step {step.id} runs under ({step.epoch})"
    if request.name not in step.credentials:
        return f"credential {request.name!r} is not in the `credentials` list of step {step.id}"
    return None


def starting(step: StepHolder | None, request: CredentialRequest) -> bool:
    """Whether the step may be about to start with this attempt: the agent claims a step and reports it
    `started` in one go, but the engine records the report a moment later. Worth waiting a little for."""
    return step is not None and step.state == StepState.QUEUED and step.attempt == request.attempt

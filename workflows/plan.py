"""The planner: one step per resource, edges from `depends_on`; steps with nothing pending run in parallel."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from workflows.spec import RetryPolicy

if TYPE_CHECKING:
    from workflows.spec import DesiredState


class StepPlan(BaseModel):
    """One step of a workflow, before it is stored."""

    id: str
    index: int
    resource: str
    kind: str
    name: str
    role: str
    scope: str | None = None
    spec: dict[str, Any]
    depends_on: list[str] = Field(default_factory=list)
    dependents: list[str] = Field(default_factory=list)
    timeout_s: float | None = None
    retry_attempts: int = 3
    retry_backoff_s: float = 2.0
    credentials: list[str] = Field(default_factory=list)


class WorkflowPlan(BaseModel):
    """A workflow: its steps in file order, and a digest of the desired state it converges to."""

    id: str
    name: str
    digest: str
    steps: list[StepPlan]


def digest(desired: DesiredState) -> str:
    """A stable fingerprint of a desired state: equal documents give equal digests."""
    body = json.dumps(desired.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def plan(desired: DesiredState, workflow_id: str) -> WorkflowPlan:
    """Turn a validated desired state into a workflow. The file was validated: every reference resolves."""
    ids = {res.ref: f"{workflow_id}.{index}" for index, res in enumerate(desired.resources)}
    default = desired.retry or RetryPolicy()
    # model_construct: the desired state was validated; re-validating every step would double the cost.
    steps = [
        StepPlan.model_construct(
            id=ids[res.ref],
            index=index,
            resource=res.ref,
            kind=res.kind,
            name=res.name,
            role=res.role or "",
            scope=res.scope,
            spec=res.spec,
            dependents=[],
            depends_on=[ids[ref] for ref in res.depends_on],
            timeout_s=res.timeout_s,
            retry_attempts=(res.retry or default).attempts,
            retry_backoff_s=(res.retry or default).backoff_s,
            credentials=list(res.credentials),
        )
        for index, res in enumerate(desired.resources)
    ]
    by_id = {step.id: step for step in steps}
    for step in steps:
        for dep in step.depends_on:
            by_id[dep].dependents.append(step.id)
    return WorkflowPlan(id=workflow_id, name=desired.metadata.name, digest=digest(desired), steps=steps)


def ready(steps: list[StepPlan], done: set[str]) -> list[StepPlan]:
    """The steps not yet done whose dependencies are all done."""
    return [s for s in steps if s.id not in done and all(d in done for d in s.depends_on)]

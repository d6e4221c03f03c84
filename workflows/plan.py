"""The planner: one step per resource, edges from `depends_on`; steps with nothing pending run in parallel.

A resource with `scope: each` becomes one step per live agent of its role, each pinned to that agent (its
scope is the agent id, its resource `kind/name@agent-id`). The live agents are given as plain data: the
planner knows nothing of Redis. Between two `each` resources of one role a dependency holds per agent;
any other dependency on an `each` resource waits for all of its steps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from workflows.spec import EACH, RetryPolicy

if TYPE_CHECKING:
    from workflows.spec import DesiredState, Resource


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
    # The steps whose `changed: true` makes this one run (its resource's `on_change`), all in depends_on;
    # None when it has no `on_change` (an empty list: its triggers made no step, so it is skipped).
    on_change: list[str] | None = None
    timeout_s: float | None = None
    # The resource's retry policy (workflows.spec.RetryPolicy, where its defaults are).
    retry_attempts: int
    retry_backoff_s: float
    credentials: list[str] = Field(default_factory=list)


class WorkflowPlan(BaseModel):
    """A workflow: its steps in file order, and a digest of the desired state it converges to.

    `unplaced` holds what made no step, with the reason: each `each` resource whose role has no live agent.
    """

    id: str
    name: str
    digest: str
    steps: list[StepPlan]
    unplaced: dict[str, str] = Field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """What an operator is told about this plan: the resources that made no step, and why."""
        return [f"{ref}: {reason}" for ref, reason in self.unplaced.items()]


Agents = Mapping[str, Sequence[str]]
"""The live agents of each role: role -> agent ids."""


def each_roles(desired: DesiredState) -> set[str]:
    """The roles of the resources with `scope: each`: the engine looks up live agents only for these."""
    return {res.role or "" for res in desired.resources if res.scope == EACH}


def digest(desired: DesiredState, agents: Agents | None = None) -> str:
    """A stable fingerprint of a desired state: equal documents give equal digests.

    With `scope: each` resources it also covers the live agents of their roles, so that an apply after an
    agent joined is a new workflow (which brings that agent up to date), not the one still running.
    """
    document: Any = desired.model_dump(mode="json", by_alias=True)
    roles = each_roles(desired)
    if roles:
        placed = {role: sorted(set((agents or {}).get(role, ()))) for role in roles}
        document = {"desired": document, "each": placed}
    body = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def plan(desired: DesiredState, workflow_id: str, agents: Agents | None = None) -> WorkflowPlan:
    """Turn a validated desired state into a workflow. The file was validated: every reference resolves.

    `agents` (role -> live agent ids) places the `scope: each` resources; without it they make no step.
    """
    agents = agents or {}
    placed = [_targets(res, agents) for res in desired.resources]
    ids = [
        {target: _step_id(workflow_id, index, target) for target in targets}
        for index, targets in enumerate(placed)
    ]
    by_ref = {res.ref: index for index, res in enumerate(desired.resources)}
    default = desired.retry or RetryPolicy()
    steps: list[StepPlan] = []
    for index, res in enumerate(desired.resources):
        for target, step_id in ids[index].items():

            def after(refs: list[str], res: Resource = res, target: str | None = target) -> list[str]:
                return [
                    dep_id
                    for ref in refs
                    for dep_id in _dependency(res, target, desired.resources[by_ref[ref]], ids[by_ref[ref]])
                ]

            step = _step(res, target, step_id, len(steps), after(res.after), res.retry or default)
            step.on_change = after(res.on_change) if res.on_change else None
            steps.append(step)
    by_id = {step.id: step for step in steps}
    for step in steps:
        for dep in step.depends_on:
            by_id[dep].dependents.append(step.id)
    unplaced = {
        res.ref: _unplaced(res) for res, targets in zip(desired.resources, placed, strict=True) if not targets
    }
    return WorkflowPlan(
        id=workflow_id,
        name=desired.metadata.name,
        digest=digest(desired, agents),
        steps=steps,
        unplaced=unplaced,
    )


def _step(
    res: Resource, target: str | None, step_id: str, index: int, depends_on: list[str], retry: RetryPolicy
) -> StepPlan:
    # model_construct: the desired state was validated; re-validating every step would double the cost.
    return StepPlan.model_construct(
        id=step_id,
        index=index,
        resource=res.ref if target is None else f"{res.ref}@{target}",
        kind=res.kind,
        name=res.name,
        role=res.role or "",
        scope=res.scope if target is None else target,
        spec=res.spec,
        dependents=[],
        depends_on=depends_on,
        on_change=None,
        timeout_s=res.timeout_s,
        retry_attempts=retry.attempts,
        retry_backoff_s=retry.backoff_s,
        credentials=list(res.credentials),
    )


def _targets(res: Resource, agents: Agents) -> Sequence[str | None]:
    """The agents a resource's steps go to: each live agent of its role for `each`, else one step (None)."""
    if res.scope != EACH:
        return [None]
    return sorted(set(agents.get(res.role or "", ())))


def _step_id(workflow_id: str, index: int, target: str | None) -> str:
    """`<workflow>.<index>`, and `<workflow>.<index>.<agent>` for the steps of an `each` resource."""
    return f"{workflow_id}.{index}" if target is None else f"{workflow_id}.{index}.{target}"


def _dependency(
    res: Resource, target: str | None, dep: Resource, dep_ids: dict[str | None, str]
) -> list[str]:
    """The steps of `dep` that the step of `res` on `target` waits for."""
    if target is not None and dep.scope == EACH and dep.role == res.role:
        return [dep_ids[target]] if target in dep_ids else []
    return list(dep_ids.values())


def _unplaced(res: Resource) -> str:
    return (
        f"`scope: each` found no live agent of role {res.role!r}, so this resource makes no step; start an "
        f"agent of role {res.role!r} and apply again"
    )


def ready(steps: list[StepPlan], done: set[str]) -> list[StepPlan]:
    """The steps not yet done whose dependencies are all done."""
    return [s for s in steps if s.id not in done and all(d in done for d in s.depends_on)]

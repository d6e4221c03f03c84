"""The engine's operations, independent of HTTP: submit a desired state, plan it, read the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from common.models import CheckResult, WorkflowView
from common.settings import Settings
from common.store import Store
from engine.checks import observe
from engine.dispatcher import Dispatcher
from workflows.plan import plan
from workflows.registry import Registry
from workflows.spec import load_text


def new_workflow_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Engine:
    """Everything the API needs, wired once by the service."""

    settings: Settings
    store: Store
    client: redis.Redis
    dispatcher: Dispatcher
    registry: Registry

    def submit(self, source: str, filename: str) -> tuple[WorkflowView, bool]:
        """Validate, plan, persist and dispatch. Returns the workflow and whether it is new.

        A desired state identical to one whose workflow is still running returns that workflow.
        """
        desired = load_text(source, filename, self.registry)
        workflow_plan = plan(desired, new_workflow_id())
        existing = self.store.active_by_digest(workflow_plan.digest)
        if existing is not None:
            view = self.store.workflow(existing)
            if view is not None:
                return view, False
        first = self.store.create_workflow(workflow_plan, source)
        self.dispatcher.publish(first)
        view = self.store.workflow(workflow_plan.id)
        assert view is not None
        return view, True

    def plan(self, source: str, filename: str) -> list[CheckResult]:
        desired = load_text(source, filename, self.registry)
        workflow_plan = plan(desired, "plan-" + new_workflow_id())
        return observe(workflow_plan, self.client, self.dispatcher, self.settings.plan_timeout_s)

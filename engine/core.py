"""The engine's operations, independent of HTTP: submit, plan, cancel, retry; and acting on the store."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis

from common import names
from common.errors import NotFound
from common.models import CheckResult, WorkflowView
from common.settings import Settings
from common.store import RecordResult, Store
from engine.checks import observe
from engine.dispatcher import Dispatcher
from workflows.plan import plan
from workflows.registry import Registry
from workflows.spec import load_text


def new_workflow_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Engine:
    """Everything the API, the ingester and the watchdog share, wired once by the service."""

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
            return self.workflow(existing), False
        self.dispatcher.publish(self.store.create_workflow(workflow_plan, source))
        return self.workflow(workflow_plan.id), True

    def workflow(self, workflow_id: str) -> WorkflowView:
        view = self.store.workflow(workflow_id)
        if view is None:
            raise NotFound(f"no workflow {workflow_id}: `converge workflows list` shows the active ones")
        return view

    def plan(self, source: str, filename: str) -> list[CheckResult]:
        desired = load_text(source, filename, self.registry)
        workflow_plan = plan(desired, "plan-" + new_workflow_id())
        return observe(workflow_plan, self.client, self.dispatcher, self.settings.plan_timeout_s)

    def cancel(self, workflow_id: str) -> WorkflowView:
        """Queued steps never start; running ones are stopped by their agents, which confirm it."""
        self.dispatcher.stop(self.store.cancel(workflow_id).to_stop)
        return self.workflow(workflow_id)

    def retry(self, workflow_id: str) -> WorkflowView:
        """Run again what has not succeeded; steps that already comply finish with `changed: false`."""
        self.dispatcher.publish(self.store.retry(workflow_id))
        return self.workflow(workflow_id)

    def prune(self, older_than_days: float | None = None) -> int:
        days = self.settings.history_retention_days if older_than_days is None else older_than_days
        return self.store.prune(time.time() - days * 86400)

    def republish_queued(self) -> int:
        """Publish every step the store says is queued: after an engine crash, or when Redis lost them.

        Marks the broker first; a delivery that still exists is then delivered twice, and the agents'
        claim drops the second copy.
        """
        self.client.set(names.BROKER_MARK, 1)
        return self.dispatcher.publish(self.store.queued())

    def act(self, result: RecordResult) -> None:
        """Do what recording status asked for: publish released steps, stop aborted ones."""
        if result.to_stop:
            self.dispatcher.stop(result.to_stop)
        if result.ready:
            self.dispatcher.publish(result.ready)

"""The engine's operations, independent of HTTP: submit, plan, cancel, retry; and acting on the store."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from common import names
from common.errors import BadInput, Unreachable
from common.models import (
    CheckResult,
    HistoryCount,
    StepLog,
    StepMessage,
    StepState,
    WorkflowState,
    WorkflowView,
)
from common.settings import Settings, redact
from common.store import RecordResult, Store
from engine import fleet, lookup
from engine.checks import observe
from engine.dispatcher import PUBLISH_ERRORS, Dispatcher
from engine.duties import Duties
from engine.eventkeys import EventKeys
from engine.fanout import agents_by_role
from workflows.plan import each_roles, plan
from workflows.registry import Registry
from workflows.sources import DesiredInput, as_input, load_input, stored_source

log = logging.getLogger("converge.engine")
DAY_S = 86400.0


def new_workflow_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Submitted:
    """What `apply` answers: the workflow, whether it is new, and what the operator should know."""

    workflow: WorkflowView
    created: bool
    warnings: list[str]


@dataclass
class Engine:
    """Everything the API, the ingester and the watchdog share, wired once by the service."""

    settings: Settings
    store: Store
    client: redis.Redis
    dispatcher: Dispatcher
    registry: Registry
    event_keys: EventKeys  # whose status events are recorded
    # Set when steps were stored as `queued` but publishing them failed: the watchdog publishes them again.
    republish_wanted: bool = False
    # The singleton duties, when this engine campaigns for them (the service); None: it holds them alone.
    duties: Duties | None = None
    # The public key (PEM) of this engine's own agent (engine.local_agent), admitted as it enrolls.
    local_agent_key: str | None = None

    def submit(self, source: str, filename: str) -> tuple[WorkflowView, bool]:
        """Validate, plan, persist and dispatch. Returns the workflow and whether it is new."""
        submitted = self.apply(source, filename)
        return submitted.workflow, submitted.created

    def apply(self, source: str | DesiredInput, filename: str = "<api>") -> Submitted:
        """Validate, plan, persist and dispatch: the workflow, whether it is new, and warnings.

        A desired state identical to one whose workflow is still running returns that workflow (the store
        decides that atomically). With Redis down nothing is stored: Unreachable. A role (or scoped agent)
        with no live agent is a warning: its steps wait in their queue until one starts.
        """
        given = as_input(source, filename)
        desired = load_input(given, self.registry)
        self._check_redis()
        workflow_plan = plan(desired, new_workflow_id(), agents_by_role(self.client, each_roles(desired)))
        for warning in workflow_plan.warnings:
            log.warning("%s", warning)
        created = self.store.create_workflow(workflow_plan, stored_source(given))
        if created.created:
            self._publish(created.ready, f"workflow {created.workflow_id} was stored")
        warnings = workflow_plan.warnings + self._unserved((s.role, s.scope) for s in workflow_plan.steps)
        return Submitted(self.workflow(created.workflow_id), created.created, warnings)

    def _unserved(self, steps: Iterable[tuple[str, str | None]]) -> list[str]:
        try:
            return fleet.unserved(steps, fleet.live_agents(self.client))
        except redis.RedisError as exc:  # only a warning is lost: the workflow is stored and published
            log.warning("could not read the live agents to warn of roles without one: %s", exc)
            return []

    def _check_redis(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise Unreachable(
                f"the engine cannot reach Redis at {redact(self.settings.broker_url)} ({exc}): nothing was "
                "stored; apply again once Redis is back"
            ) from exc

    def _publish(self, messages: Iterable[StepMessage], done: str) -> None:
        """Publish steps the store marked `queued`; if Redis is gone, the watchdog publishes them later."""
        try:
            self.dispatcher.publish(messages)
        except PUBLISH_ERRORS as exc:
            self.republish_wanted = True
            raise Unreachable(
                f"{done}, but Redis at {redact(self.settings.broker_url)} cannot be reached to dispatch its "
                f"steps ({exc}): they will be dispatched when Redis is back"
            ) from exc

    def resolve(self, given: str) -> str:
        """The id of the workflow `given` names, active or in history: its id, or a prefix of at least
        lookup.MIN_PREFIX characters that no other id starts with (ambiguous: BadInput; none: NotFound)."""
        return lookup.choose(given, self.store.workflow_ids(given, limit=lookup.SHOWN + 1))

    def workflows(self, state: WorkflowState | None = None) -> list[WorkflowView]:
        """The active workflows (not in history), or those in `state`: succeeded ones are in history."""
        return self.store.workflows(history=state == WorkflowState.SUCCEEDED, state=state)

    def workflow(self, workflow_id: str) -> WorkflowView:
        view = self.store.workflow(self.resolve(workflow_id))
        if view is None:  # pruned since it was resolved
            raise lookup.not_found(workflow_id)
        if any(step.state == StepState.QUEUED for step in view.steps or []):
            try:  # queued steps that no live agent can take say so
                return fleet.note_waiting(view, fleet.live_agents(self.client))
            except redis.RedisError:  # the store's view stands without the notes
                return view
        return view

    def logs(self, workflow_id: str) -> list[StepLog]:
        """Each step of a workflow with what its last finished attempt wrote (None: nothing yet)."""
        view = self.workflow(workflow_id)
        outputs = self.store.outputs(view.id)
        return [
            StepLog(id=s.id, resource=s.resource, state=s.state, output=outputs.get(s.id))
            for s in view.steps or []
        ]

    def plan(self, source: str | DesiredInput, filename: str = "<api>") -> list[CheckResult]:
        desired = load_input(as_input(source, filename), self.registry)
        agents = agents_by_role(self.client, each_roles(desired))
        workflow_plan = plan(desired, "plan-" + new_workflow_id(), agents)
        return observe(workflow_plan, self.client, self.dispatcher, self.settings.plan_timeout_s)

    def cancel(self, workflow_id: str) -> WorkflowView:
        """Queued steps never start; running ones are stopped by their agents, which confirm it."""
        workflow_id = self.resolve(workflow_id)
        self.dispatcher.stop(self.store.cancel(workflow_id).to_stop)
        return self.workflow(workflow_id)

    def retry(self, workflow_id: str) -> WorkflowView:
        """Run again what has not succeeded; steps that already comply finish with `changed: false`."""
        workflow_id = self.resolve(workflow_id)
        self._publish(self.store.retry(workflow_id), f"workflow {workflow_id} will run again")
        return self.workflow(workflow_id)

    def history_count(self, older_than_days: float | None = None) -> HistoryCount:
        """How many workflows history holds, and how many `prune(older_than_days)` would delete."""
        before = self._cutoff(older_than_days)
        return HistoryCount(
            history=self.store.count_workflows(history=True),
            prunable=self.store.count_workflows(history=True, finished_before=before),
        )

    def prune(self, older_than_days: float | None = None, *, everything: bool = False) -> int:
        """Delete history older than `older_than_days` (default: the retention); the operator's prune.

        One that would leave history empty is refused as bad input unless `everything`: the operator
        confirmed it (the CLI asks, or `--yes`), so that no client deletes all history by a slip.
        """
        before = self._cutoff(older_than_days)
        if not everything:
            prunable = self.store.count_workflows(history=True, finished_before=before)
            if prunable and prunable == self.store.count_workflows(history=True):
                raise BadInput(
                    f"this would delete all {prunable} workflows from history: confirm it with "
                    "`converge workflows prune --yes` (over the API: all=true)"
                )
        return self.store.prune(before)

    def expire(self, now: float) -> tuple[int, int]:
        """The engine's own hourly prune, by its settings: succeeded workflows past history_retention_days,
        then failed, aborted and cancelled ones past failed_retention_days. How many of each went."""
        settings = self.settings
        return (
            self.store.prune(now - settings.history_retention_days * DAY_S),
            self.store.prune_unsucceeded(now - settings.failed_retention_days * DAY_S),
        )

    def _cutoff(self, older_than_days: float | None) -> float:
        days = self.settings.history_retention_days if older_than_days is None else older_than_days
        return time.time() - days * DAY_S

    def republish_queued(self) -> int:
        """Publish every step the store says is queued: after an engine crash, or when Redis lost them.

        Marks the broker first; a delivery that still exists is then delivered twice, and the agents'
        claim drops the second copy.
        """
        self.client.set(names.BROKER_MARK, 1)
        return self.dispatcher.publish(self.store.queued())

    def republish_if_wanted(self) -> int:
        """Publish the queued steps again if a publish failed since the last time (see `republish_wanted`)."""
        if not self.republish_wanted:
            return 0
        self.republish_wanted = False  # before reading the store: a failure from now on sets it again
        try:
            republished = self.republish_queued()
        except BaseException:
            self.republish_wanted = True
            raise
        log.warning("Redis is back: published %d queued steps whose publishing had failed", republished)
        return republished

    def act(self, result: RecordResult) -> None:
        """Do what recording status asked for: publish released steps, stop aborted ones."""
        if result.to_stop:
            self.dispatcher.stop(result.to_stop)
        if result.ready:
            try:
                self.dispatcher.publish(result.ready)
            except PUBLISH_ERRORS:
                self.republish_wanted = True
                raise

"""Runs one step on the agent: report `started`, observe, apply only the difference, report the outcome."""

from __future__ import annotations

import logging

from agents.reporter import Reporter, StepProgress
from common.models import Change, CheckResult, StepMessage
from workflows.execute import execute
from workflows.registry import Registry, StepError

log = logging.getLogger("converge.agent")


class StepRunner:
    """Runs the steps delivered to this agent, refusing any that are not for its roles or its id."""

    def __init__(
        self,
        agent_id: str,
        roles: list[str],
        registry: Registry,
        reporter: Reporter,
        progress_interval_s: float,
        claim_ttl_s: float,
    ) -> None:
        self.claim_ttl_s = claim_ttl_s
        self.agent_id = agent_id
        self.roles = set(roles)
        self.registry = registry
        self.reporter = reporter
        self.progress_interval_s = progress_interval_s

    def misrouted(self, message: StepMessage) -> str | None:
        if message.role not in self.roles:
            roles = sorted(self.roles)
            return f"step for role {message.role!r} delivered to agent {self.agent_id} of roles {roles}"
        if message.scope is not None and message.scope != self.agent_id:
            return f"step pinned to agent {message.scope!r} delivered to agent {self.agent_id}"
        return None

    def run(self, message: StepMessage) -> None:
        ctx = StepProgress(self.reporter, message, self.progress_interval_s)
        if message.mode == "check":
            self._check(message, ctx)
            return
        wrong = self.misrouted(message)
        if wrong is not None:
            log.error("refusing step %s: %s", message.step_id, wrong)
            self.reporter.event(message, ctx.next_seq(), "failed", error=wrong)
            return
        if not self.reporter.claim_and_start(message, self.claim_ttl_s):
            log.warning("dropping a second delivery of step %s attempt %d", message.step_id, message.attempt)
            return
        ctx.next_seq()
        try:
            outcome = execute(self.registry, message.kind, message.spec, "apply", ctx)
        except StepError as exc:
            self.reporter.event(message, ctx.next_seq(), "failed", error=str(exc))
        except Exception as exc:  # a provider bug must still end the step, with what went wrong
            log.exception("step %s crashed", message.step_id)
            self.reporter.event(message, ctx.next_seq(), "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self.reporter.event(
                message,
                ctx.next_seq(),
                "succeeded",
                changed=outcome.changed,
                message=_summary(outcome.change),
            )

    def _check(self, message: StepMessage, ctx: StepProgress) -> None:
        assert message.reply_to is not None
        result = CheckResult(step_id=message.step_id, resource=message.resource, agent=self.agent_id)
        wrong = self.misrouted(message)
        try:
            if wrong is not None:
                raise StepError(wrong, retryable=False)
            result.change = execute(self.registry, message.kind, message.spec, "check", ctx).change
        except StepError as exc:
            result.error = str(exc)
        except Exception as exc:
            log.exception("check of %s crashed", message.step_id)
            result.error = f"{type(exc).__name__}: {exc}"
        self.reporter.check_result(message.reply_to, result)


def _summary(change: Change) -> str:
    if change.action == "none":
        return change.diff or "already compliant"
    return f"{change.action}d"

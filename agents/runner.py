"""Runs one step on the agent: claim it, report `started`, observe, apply only the difference, report."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from celery.exceptions import Reject

from agents import facts
from agents.control import StepControl
from agents.reporter import Claim, Reporter, StepProgress
from agents.shared import SharedStepSettings
from agents.verdicts import Ended
from common.models import Change, CheckResult, StepMessage
from workflows import templates
from workflows.context import EVERYWHERE
from workflows.execute import execute
from workflows.registry import Registry, StepError, action_word

log = logging.getLogger("converge.agent")

# How a step that had to stop is reported: its state, and what the operator reads.
_STOPPED: dict[str, tuple[str, dict[str, object]]] = {
    "cancelled": ("cancelled", {"error": "cancelled by an operator"}),
    "timed_out": ("timed_out", {"error": "no progress for {timeout:g}s: the step was ended"}),
    "cut_off": (
        "failed",
        {
            "error": "ended by its agent, which could not reach Redis: nobody could follow the step any "
            "more, and the engine runs it again",
            "lost": True,
        },
    ),
}
CLAIM_RETRY_MAX_S = 5.0
NOT_LEADER_PAUSE_S = 0.2


def stopped(reason: str, timeout_s: float) -> tuple[str, dict[str, object]]:
    state, fields = _STOPPED[reason]
    error = str(fields["error"]).format(timeout=timeout_s)
    return state, {**fields, "error": error}


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
        step_timeout_s: float,
        cut_off: Callable[[], bool],
        allowed_paths: Sequence[Path] = EVERYWHERE,
        shared: SharedStepSettings | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.shared = shared  # the settings that change live (agents.live), read again at each step
        self.allowed_paths = tuple(allowed_paths)  # where the built-in kinds may act (agent setting)
        self.roles = set(roles)
        self.registry = registry
        self.reporter = reporter
        self.progress_interval_s = progress_interval_s
        self.claim_ttl_s = claim_ttl_s
        self.step_timeout_s = step_timeout_s
        self.control = StepControl(lambda: reporter.watch_client, claim_ttl_s, cut_off)

    def follow(self) -> None:
        """Take up what the main process changed since the last step: roles, timeout, interval, log level."""
        if self.shared is None:
            return
        values = self.shared.read()
        self.roles = set(values.roles)
        self.step_timeout_s = values.step_timeout_s
        self.progress_interval_s = values.progress_interval_s
        level = logging.getLevelName(values.loglevel.upper())
        if isinstance(level, int) and logging.getLogger().level != level:
            logging.getLogger().setLevel(level)

    def misrouted(self, message: StepMessage) -> str | None:
        if message.role not in self.roles:
            roles = sorted(self.roles)
            return f"step for role {message.role!r} delivered to agent {self.agent_id} of roles {roles}"
        if message.scope is not None and message.scope != self.agent_id:
            return f"step pinned to agent {message.scope!r} delivered to agent {self.agent_id}"
        return None

    def run(self, message: StepMessage) -> Ended | None:
        """Run a delivered step and report its outcome; returns how it ended, None if it did not run."""
        self.follow()
        if message.mode == "check":
            self._check(message)
            return None
        wrong = self.misrouted(message)
        if wrong is not None:
            log.error("refusing step %s: %s", message.step_id, wrong)
            self.reporter.final(message, 1, "failed", error=wrong, retryable=False)
            return Ended("failed", wrong)
        self.reporter.outbox.begin(message)
        claim, epoch = self._claim(message)
        if claim is Claim.NOT_LEADER:  # the role's new leader takes it from the queue
            self.reporter.outbox.forget(message)
            log.info(
                "putting step %s back on its queue: this agent does not lead %s",
                message.step_id,
                message.role,
            )
            # Until the elector cancels this agent's consumer of the role (one heartbeat at most), it could
            # take the same message again at once: a pause keeps that from spinning.
            time.sleep(NOT_LEADER_PAUSE_S)
            raise Reject(claim.value, requeue=True)
        if claim is not Claim.OURS:
            self.reporter.outbox.forget(message)
            log.warning("dropping step %s attempt %d: %s", message.step_id, message.attempt, claim.value)
            return Ended("cancelled", "cancelled before it started") if claim is Claim.CANCELLED else None
        if epoch != message.epoch:  # the leadership changed since the engine sent it: report under ours
            message = message.model_copy(update={"epoch": epoch})
            self.reporter.outbox.begin(message)
        ctx = StepProgress(
            self.reporter,
            message,
            self.progress_interval_s,
            self.control,
            self.allowed_paths,
            self.registry.validator,
        )
        ctx.next_seq()  # `started` went out with the claim
        timeout_s = message.timeout_s or self.step_timeout_s

        def abandon(reason: str) -> None:
            state, fields = stopped(reason, timeout_s)
            self.reporter.final(message, ctx.next_seq(), state, **fields)

        self.control.begin(message, timeout_s, abandon)
        try:
            return self._apply(message, ctx, timeout_s)
        finally:
            self.control.end()

    def _apply(self, message: StepMessage, ctx: StepProgress, timeout_s: float) -> Ended:
        fields: dict[str, object]
        try:
            outcome = execute(self.registry, message.kind, self._spec(message), "apply", ctx)
        except StepError as exc:
            state, fields = "failed", {"error": str(exc), "retryable": exc.retryable}
            fields["message"] = first_line(str(exc))
        except Exception as exc:  # a provider bug, or StepStopped: the step must still end, saying why
            if self.control.reason is None:
                log.exception("step %s crashed", message.step_id)
            state, fields = "failed", {"error": f"{type(exc).__name__}: {exc}", "retryable": True}
            fields["message"] = first_line(str(fields["error"]))
        else:
            state, fields = (
                "succeeded",
                {"changed": outcome.changed, "message": self._summary(message, outcome.change)},
            )
        reason = self.control.reason
        if reason is not None:
            state, fields = stopped(reason, timeout_s)
        if state != "succeeded":
            log.warning(
                "step %s (%s) attempt %d %s: %s",
                message.step_id,
                message.resource,
                message.attempt,
                state,
                last_line(str(fields.get("error", ""))),
            )
        self.reporter.final(message, ctx.next_seq(), state, output=ctx.captured, **fields)
        # Whether the engine runs it again (common.lifecycle.retry), for Flower; the engine decides.
        again = state == "failed" and fields.get("retryable") is not False
        return Ended(state, str(fields.get("error", "")), again and message.attempt < message.retry_attempts)

    def _summary(self, message: StepMessage, change: Change) -> str:
        return _summary_of(self.registry, message, change)

    def _claim(self, message: StepMessage) -> tuple[Claim, int]:
        """Claim the attempt, waiting for Redis while it cannot be reached: the step has not started, and
        giving up would lose its delivery. A retry first sends what the outbox holds for the step."""
        delay = 0.2
        while True:
            try:
                if message.attempt > 1:
                    self.reporter.flush(message.step_id)
                return self.reporter.claim_and_start(message, self.claim_ttl_s)
            except redis.RedisError as exc:
                log.warning("cannot claim step %s yet (%s); again in %.1fs", message.step_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, CLAIM_RETRY_MAX_S)

    @functools.cached_property
    def facts(self) -> dict[str, Any]:
        """What templates see of this host as `facts` (agents.facts), gathered on first use."""
        return facts.gather(self.agent_id, self.roles)

    def _spec(self, message: StepMessage) -> dict[str, Any]:
        """The step's spec with its templates of facts rendered for this host: each agent its own."""
        try:
            rendered: dict[str, Any] = templates.render_facts(message.spec, self.facts)
        except templates.TemplateProblem as exc:
            raise StepError(f"{message.resource}: spec: {exc}", retryable=False) from None
        return rendered

    def _check(self, message: StepMessage) -> None:
        assert message.reply_to is not None
        ctx = StepProgress(
            self.reporter,
            message,
            self.progress_interval_s,
            None,
            self.allowed_paths,
            self.registry.validator,
        )
        result = CheckResult(step_id=message.step_id, resource=message.resource, agent=self.agent_id)
        wrong = self.misrouted(message)
        try:
            if wrong is not None:
                raise StepError(wrong, retryable=False)
            result.change = execute(self.registry, message.kind, self._spec(message), "check", ctx).change
        except StepError as exc:
            result.error = str(exc)
        except Exception as exc:
            log.exception("check of %s crashed", message.step_id)
            result.error = f"{type(exc).__name__}: {exc}"
        self.reporter.check_result(message.reply_to, result)


def _summary_of(registry: Registry, message: StepMessage, change: Change) -> str:
    if change.action == "none":
        return change.diff or "already compliant"
    return action_word(registry, message.resource, change.action, done=True)


MESSAGE_CHARS = 200


def first_line(text: str) -> str:
    """A failed step's message: the first line of its error (`command exited with code 3: ...`), cut."""
    return _cut(text.strip().split("\n", 1)[0])


def last_line(text: str) -> str:
    """For the agent's log: the error's last line, where a command's own complaint usually is."""
    lines = text.strip().splitlines()
    return _cut(lines[-1] if lines else "")


def _cut(line: str) -> str:
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "..."

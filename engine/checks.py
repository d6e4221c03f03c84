"""`plan`: the agents observe every resource in check mode and say what `apply` would change."""

from __future__ import annotations

import time
import uuid

import redis

from common import names
from common.errors import Unreachable
from common.models import Change, CheckResult, StepMessage
from engine.dispatcher import Dispatcher
from workflows.plan import WorkflowPlan


def observe(
    plan: WorkflowPlan, client: redis.Redis, dispatcher: Dispatcher, timeout_s: float
) -> list[CheckResult]:
    """Publish one check-mode step per resource and gather the answers, in file order.

    Checks change nothing, so they all go out at once, whatever their dependencies. A role with no agent
    to answer within `timeout_s` is an error that names the roles still silent. A `scope: each` resource
    whose role has no live agent makes no step: it comes last, as an error saying so.
    """
    reply_to = names.plan_reply_key(uuid.uuid4().hex)
    messages = [StepMessage.from_plan(step, plan.id, mode="check", reply_to=reply_to) for step in plan.steps]
    dispatcher.publish(messages, expires_s=timeout_s)
    answers: dict[str, CheckResult] = {}
    deadline = time.monotonic() + timeout_s
    while len(answers) < len(messages):
        left = deadline - time.monotonic()
        popped = client.blpop([reply_to], timeout=max(0.1, min(left, 1.0))) if left > 0 else None
        if popped is None and left <= 0:
            break
        if popped is not None:
            result = CheckResult.model_validate_json(popped[1])
            answers[result.step_id] = result
    client.delete(reply_to)
    unplaced = [
        CheckResult(step_id="", resource=ref, agent="-", error=reason)
        for ref, reason in plan.unplaced.items()
    ]
    missing = [m for m in messages if m.step_id not in answers]
    if missing:
        silent = sorted({f"{m.role}" + (f" (agent {m.scope})" if m.scope else "") for m in missing})
        raise Unreachable(
            f"no agent answered for {len(missing)} resource(s) within {timeout_s:g}s; roles without a "
            f"running agent: {', '.join(silent)}. Start one with `converge-agent run --role ROLE`."
        )
    return follow_triggers(plan, [answers[m.step_id] for m in messages]) + unplaced


def follow_triggers(plan: WorkflowPlan, results: list[CheckResult]) -> list[CheckResult]:
    """The checks of a plan's steps (in step order), with what `on_change` makes of them.

    A step with `on_change` runs only when one of the steps it follows changes something: when one of
    their checks would change something, it would run (its own check says how), else it would be skipped,
    as `apply` would skip it, and nothing of it would change.
    """
    by_id = {r.step_id: r for r in results}
    shown: list[CheckResult] = []
    for step, result in zip(plan.steps, results, strict=True):
        if step.on_change is None or result.error:
            shown.append(result)
            continue
        triggers = [by_id[t] for t in step.on_change if t in by_id]
        refs = ", ".join(dict.fromkeys(t.resource.partition("@")[0] for t in triggers)) or "nothing"
        changing = [t.resource for t in triggers if t.change is not None and t.change.action != "none"]
        unknown = [t.resource for t in triggers if t.error]
        if changing:
            note = f"would run: {', '.join(changing)} would change"
            shown.append(result.model_copy(update={"note": note}))
        elif unknown:
            note = f"would run only if {', '.join(unknown)} changes, which could not be checked"
            shown.append(result.model_copy(update={"note": note}))
        else:
            note = f"would be skipped: none of {refs} would change"
            change = Change(action="none")
            shown.append(result.model_copy(update={"note": note, "change": change}))
    return shown

"""`plan`: the agents observe every resource in check mode and say what `apply` would change."""

from __future__ import annotations

import time
import uuid

import redis

from common import names
from common.errors import Unreachable
from common.models import CheckResult, StepMessage
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
    return [answers[m.step_id] for m in messages] + unplaced

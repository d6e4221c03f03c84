"""Which roles and scoped agents of a workflow no live agent serves, and what their queued steps say."""

from __future__ import annotations

from datetime import UTC, datetime

from common.models import AgentInfo, StepState, StepView, WorkflowState, WorkflowView
from engine.fleet import note_waiting, unserved


def agent(agent_id: str, *roles: str) -> AgentInfo:
    now = datetime.now(UTC)
    return AgentInfo(
        id=agent_id,
        roles=list(roles),
        host="h",
        pid=1,
        version="0",
        throttle=1,
        started_at=now,
        last_seen=now,
    )


def step(
    step_id: str, role: str, state: StepState, message: str | None = None, scope: str | None = None
) -> StepView:
    return StepView(
        id=step_id,
        resource=f"file/{step_id}",
        role=role,
        scope=scope,
        state=state,
        attempt=1,
        changed=None,
        agent=None,
        progress=None,
        message=message,
        error=None,
        started_at=None,
        finished_at=None,
    )


def running(*steps: StepView) -> WorkflowView:
    return WorkflowView(
        id="wf",
        name="n",
        state=WorkflowState.RUNNING,
        created_at=datetime.now(UTC),
        finished_at=None,
        steps=list(steps),
    )


def test_a_role_that_a_live_agent_serves_gives_no_warning() -> None:
    assert unserved([("web", None), ("web", None)], [agent("w1", "web")]) == []


def test_each_role_without_a_live_agent_is_named_once_with_its_number_of_steps() -> None:
    warnings = unserved([("db", None), ("web", None), ("db", None)], [agent("w1", "web")])
    assert len(warnings) == 1
    assert "no live agent has role db: 2 steps wait" in warnings[0]
    assert "converge-agent run --role db" in warnings[0]


def test_a_scoped_step_warns_when_its_agent_is_not_alive_even_if_its_role_has_agents() -> None:
    warnings = unserved([("web", "web-07")], [agent("w1", "web")])
    assert warnings == [
        "agent web-07 (scope of role web) is not alive: 1 step waits for it, held by the engine until it is "
        "(`converge-agent run --id web-07 --role web`)"
    ]
    assert unserved([("web", "w1")], [agent("w1", "web")]) == []


def test_queued_steps_of_a_role_without_a_live_agent_say_they_wait_for_one() -> None:
    view = running(
        step("a", "web", StepState.QUEUED),
        step("b", "db", StepState.QUEUED),
        step("c", "db", StepState.QUEUED, "worker lost"),
        step("d", "db", StepState.PENDING),
    )

    steps = note_waiting(view, [agent("w1", "web")]).steps or []

    assert [s.message for s in steps] == [
        None,
        "waiting for an agent of role db",
        "waiting for an agent of role db; worker lost",
        None,
    ]


def test_a_queued_step_pinned_to_an_agent_that_is_not_alive_says_the_engine_holds_it() -> None:
    view = running(
        step("a", "web", StepState.QUEUED, scope="w1"), step("b", "web", StepState.QUEUED, scope="w2")
    )

    steps = note_waiting(view, [agent("w1", "web")]).steps or []

    assert [s.message for s in steps] == [
        None,
        "waiting for agent w2, which is not alive (the engine holds its steps until it is)",
    ]

"""The recap's counts and lines: pure, from step views."""

from __future__ import annotations

from common.models import StepState, StepView
from engine import recap


def step(role: str, state: StepState, changed: bool | None = None) -> StepView:
    return StepView(
        id=f"{role}-{state}-{changed}",
        resource="file/x",
        role=role,
        state=state,
        attempt=1,
        changed=changed,
        agent=None,
        progress=None,
        message=None,
        error=None,
        started_at=None,
        finished_at=None,
    )


def test_each_step_counts_once_by_role_and_in_the_total() -> None:
    steps = [
        step("web", StepState.SUCCEEDED, changed=True),
        step("web", StepState.SUCCEEDED, changed=False),
        step("web", StepState.FAILED),
        step("db", StepState.TIMED_OUT),
        step("db", StepState.CANCELLED),
        step("db", StepState.QUEUED),
    ]

    counts = recap.recap(steps)

    assert list(counts) == ["db", "web", "total"]
    assert counts["web"] == {
        "ok": 1,
        "changed": 1,
        "failed": 1,
        "skipped": 0,
        "cancelled": 0,
        "unfinished": 0,
    }
    assert counts["db"] == {"ok": 0, "changed": 0, "failed": 1, "skipped": 0, "cancelled": 1, "unfinished": 1}
    assert sum(counts["total"].values()) == len(steps)


def test_lines_show_the_four_counts_always_and_the_others_only_when_some_step_ended_so() -> None:
    counts = recap.recap([step("web", StepState.SUCCEEDED, changed=True), step("db", StepState.CANCELLED)])

    assert recap.lines(counts) == [
        "db     ok=0 changed=0 failed=0 skipped=0 cancelled=1",
        "web    ok=0 changed=1 failed=0 skipped=0",
        "total  ok=0 changed=1 failed=0 skipped=0 cancelled=1",
    ]

"""How `apply --wait` follows a workflow: the pace of its polls, and the table it ends with. A fake clock
stands in for time, and a console writing to memory for the terminal."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from rich.console import Console

from common.models import StepState, StepView, WorkflowState, WorkflowView
from engine import recap, render


class FakeClock:
    """`time` as render uses it: `monotonic` and `sleep`, where sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def step(index: int, state: StepState, changed: bool | None = None) -> StepView:
    return StepView(
        id=f"s{index}",
        resource=f"file/f{index}",
        role="web",
        state=state,
        attempt=1,
        changed=changed,
        agent="web-1",
        progress=None,
        message=None,
        error="permission denied" if state == StepState.FAILED else None,
        started_at=None,
        finished_at=None,
    )


def workflow(state: WorkflowState, steps: list[StepView] | None = None) -> WorkflowView:
    return WorkflowView(
        id="wf1",
        name="estate",
        state=state,
        created_at=datetime.now(UTC),
        finished_at=None,
        steps=steps or [],
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(render, "time", fake)
    return fake


def test_a_slow_engine_is_asked_again_only_a_poll_interval_after_it_answered(clock: FakeClock) -> None:
    asked: list[float] = []
    answers: Iterator[WorkflowState] = iter([WorkflowState.RUNNING] * 3 + [WorkflowState.SUCCEEDED])

    def fetch() -> WorkflowView:
        asked.append(clock.now)
        clock.now += 0.4  # the engine takes 0.4 s to answer
        return workflow(next(answers))

    view = render.follow(fetch, timeout_s=None, live=False)

    assert view.state == WorkflowState.SUCCEEDED
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert gaps == [pytest.approx(0.4 + render.POLL_INTERVAL_S)] * 3


def test_without_a_live_display_nothing_is_drawn_or_built(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a renderable was built")

    monkeypatch.setattr(render, "Live", refuse)
    monkeypatch.setattr(render, "live_frame", refuse)
    monkeypatch.setattr(render.display, "Display", refuse)
    answers = iter([WorkflowState.RUNNING, WorkflowState.SUCCEEDED])

    assert render.follow(lambda: workflow(next(answers)), None, live=False).state == WorkflowState.SUCCEEDED


def test_following_stops_once_the_timeout_passed_with_the_last_view(clock: FakeClock) -> None:
    asked: list[float] = []

    def fetch() -> WorkflowView:
        asked.append(clock.now)
        return workflow(WorkflowState.RUNNING)

    view = render.follow(fetch, timeout_s=1.0, live=False)

    assert view.state == WorkflowState.RUNNING
    assert asked[-1] >= 1.0 and asked[-2] < 1.0
    assert len(asked) <= 1.0 / render.POLL_INTERVAL_S + 2


def terminal(monkeypatch: pytest.MonkeyPatch, height: int) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=150, height=height)
    monkeypatch.setattr(render, "console", console)
    return out


def test_the_final_table_of_few_steps_lists_each_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    out = terminal(monkeypatch, height=40)
    steps = [step(0, StepState.SUCCEEDED, changed=False), step(1, StepState.SUCCEEDED, changed=True)]
    view = workflow(WorkflowState.SUCCEEDED, steps)

    render.workflow_result(view, recap.recap(steps))

    text = out.getvalue()
    assert "file/f0" in text and "file/f1" in text
    assert "not listed" not in text
    assert text[text.index("recap:") :].split()[:6] == [
        "recap:",
        "web",
        "ok=1",
        "changed=1",
        "failed=0",
        "skipped=0",
    ]


def test_the_final_table_of_many_steps_lists_only_what_did_not_end_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = terminal(monkeypatch, height=30)
    steps = [step(i, StepState.SUCCEEDED, changed=False) for i in range(1000)]
    steps[10] = step(10, StepState.SUCCEEDED, changed=True)
    steps[20] = step(20, StepState.FAILED)
    view = workflow(WorkflowState.FAILED, steps)

    render.workflow_result(view, recap.recap(steps))

    listed = [line.split()[0] for line in out.getvalue().splitlines() if line.startswith("file/")]
    assert listed == ["file/f10", "file/f20"]
    assert (
        "998 of 1,000 steps unchanged, not listed; all of them: converge workflows show wf1" in out.getvalue()
    )
    assert "permission denied" in out.getvalue()

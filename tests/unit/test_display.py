"""The live display's model and the final table's choice of steps: pure, from workflow views."""

from __future__ import annotations

from datetime import UTC, datetime

from common.models import StepState, StepView, WorkflowState, WorkflowView
from engine import display
from engine.display import Display


def step(
    index: int,
    state: StepState,
    *,
    changed: bool | None = None,
    progress: float | None = None,
    message: str | None = None,
    error: str | None = None,
) -> StepView:
    return StepView(
        id=f"s{index}",
        resource=f"file/f{index}",
        role="web",
        state=state,
        attempt=1,
        changed=changed,
        agent=None,
        progress=progress,
        message=message,
        error=error,
        started_at=None,
        finished_at=None,
    )


def workflow(steps: list[StepView], state: WorkflowState = WorkflowState.RUNNING) -> WorkflowView:
    return WorkflowView(
        id="wf1", name="estate", state=state, created_at=datetime.now(UTC), finished_at=None, steps=steps
    )


def many(n: int, state: StepState, start: int = 0, **fields: object) -> list[StepView]:
    return [step(start + i, state, **fields) for i in range(n)]  # type: ignore[arg-type]


def test_a_workflow_that_fits_shows_a_line_per_step_in_file_order() -> None:
    steps = [
        step(0, StepState.SUCCEEDED, changed=True),
        step(1, StepState.STARTED, progress=40.0, message="copying"),
        step(2, StepState.PENDING),
    ]

    frame = Display(height=24, started_s=100.0).frame(workflow(steps), now_s=103.5)

    assert not frame.compact
    assert [line.resource for line in frame.lines] == ["file/f0", "file/f1", "file/f2"]
    assert frame.lines[0].progress == 100.0
    assert (frame.lines[1].progress, frame.lines[1].note) == (40.0, "copying")
    assert frame.elapsed_s == 3.5
    assert (frame.done, frame.total) == (1, 3)


def test_the_counts_split_finished_steps_by_outcome_and_the_others_by_state() -> None:
    steps = [
        step(0, StepState.SUCCEEDED, changed=False),
        step(1, StepState.SUCCEEDED, changed=True),
        step(2, StepState.TIMED_OUT),
        step(3, StepState.FAILED),
        step(4, StepState.STARTED),
        step(5, StepState.QUEUED),
        step(6, StepState.PENDING),
        step(7, StepState.SKIPPED),
    ]

    frame = Display(height=50, started_s=0.0).frame(workflow(steps), now_s=1.0)

    assert frame.counts == {
        "ok": 1,
        "changed": 1,
        "failed": 2,
        "running": 1,
        "queued": 1,
        "pending": 1,
        "skipped": 1,
    }
    assert frame.done == 5
    assert frame.summary() == "5/8 done  ok=1 changed=1 failed=2 skipped=1 running=1 queued=1 pending=1"


def test_the_summary_always_names_ok_changed_failed_and_running() -> None:
    frame = Display(height=50, started_s=0.0).frame(workflow(many(3, StepState.PENDING)), now_s=0.0)

    assert frame.summary() == "0/3 done  ok=0 changed=0 failed=0 running=0 pending=3"


def test_a_workflow_taller_than_the_terminal_shows_only_running_and_failed_steps() -> None:
    steps = [
        *many(500, StepState.SUCCEEDED, changed=True),
        *many(3, StepState.STARTED, start=500, progress=10.0),
        *many(2, StepState.FAILED, start=503, error="permission denied\nmore"),
        *many(495, StepState.QUEUED, start=505),
    ]

    frame = Display(height=24, started_s=0.0).frame(workflow(steps), now_s=0.0)

    assert frame.compact
    assert [line.resource for line in frame.lines] == [f"file/f{i}" for i in range(500, 505)]
    assert [line.failed for line in frame.lines] == [False] * 3 + [True] * 2
    assert frame.lines[-1].note == "permission denied"
    assert (frame.hidden_running, frame.hidden_failed, frame.hidden()) == (0, 0, "")
    assert (frame.done, frame.total) == (502, 1000)


def test_running_and_failed_steps_share_the_room_and_say_how_many_were_left_out() -> None:
    steps = [*many(50, StepState.STARTED), *many(50, StepState.FAILED, start=50)]

    frame = Display(height=14, started_s=0.0).frame(workflow(steps), now_s=0.0)

    room = 14 - display.FRAME_OVERHEAD_LINES
    assert len(frame.lines) == room
    assert sum(not line.failed for line in frame.lines) == room // 2
    assert (frame.hidden_running, frame.hidden_failed) == (45, 45)
    assert frame.hidden() == "45 more running and 45 more failed"


def test_the_room_one_kind_does_not_need_goes_to_the_other() -> None:
    assert display.share(running=2, failed=30, room=10) == (2, 8)
    assert display.share(running=30, failed=1, room=10) == (9, 1)
    assert display.share(running=30, failed=30, room=9) == (4, 5)
    assert display.share(running=3, failed=3, room=10) == (3, 3)
    assert display.share(running=3, failed=3, room=-2) == (0, 0)


def test_a_frame_has_as_many_lines_however_large_the_workflow() -> None:
    small = Display(height=30, started_s=0.0).frame(workflow(many(100, StepState.STARTED)), now_s=0.0)
    large = Display(height=30, started_s=0.0).frame(workflow(many(10_000, StepState.STARTED)), now_s=0.0)

    assert len(small.lines) == len(large.lines) == 30 - display.FRAME_OVERHEAD_LINES


def test_a_workflow_without_steps_yet_is_not_compact_and_counts_nothing() -> None:
    frame = Display(height=24, started_s=5.0).frame(workflow([]), now_s=4.0)

    assert not frame.compact
    assert (frame.done, frame.total, frame.lines, frame.elapsed_s) == (0, 0, (), 0.0)


def test_the_final_table_lists_every_step_when_they_fit() -> None:
    steps = many(5, StepState.SUCCEEDED, changed=False)

    table = display.final_table(steps, height=24, overhead=8)

    assert (table.steps, table.unchanged, table.compact) == (tuple(steps), 0, False)


def test_the_final_table_lists_every_step_when_there_is_no_terminal() -> None:
    steps = many(5_000, StepState.SUCCEEDED, changed=False)

    assert len(display.final_table(steps, height=None, overhead=8).steps) == 5_000


def test_a_long_final_table_leaves_out_only_the_unchanged_steps_and_counts_them() -> None:
    steps = [
        *many(990, StepState.SUCCEEDED, changed=False),
        step(990, StepState.SUCCEEDED, changed=True),
        step(991, StepState.FAILED),
        step(992, StepState.CANCELLED),
        step(993, StepState.SKIPPED),
        step(994, StepState.STARTED),
    ]

    table = display.final_table(steps, height=40, overhead=8)

    assert table.compact
    assert [s.resource for s in table.steps] == [f"file/f{i}" for i in range(990, 995)]
    assert table.unchanged == 990

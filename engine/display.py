"""What `apply --wait` shows while it follows a workflow, and what its final table lists. Pure: no I/O,
no rich; `engine.render` draws what this computes.

Few steps (all of them fit the terminal): a line per step. Many steps: a summary (done/total and the
count per state) and only the steps running and those that failed, as many as fit. The cost of a frame is
one pass over the steps to count them; what is drawn is bounded by the terminal, not by the workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.models import FINISHED_STEP, StepState, StepView, WorkflowView
from engine import recap

# The lines a frame takes besides its step lines: the workflow's header, the summary bar, the line
# saying how many steps are not shown, and the line the cursor sits on under the live display.
FRAME_OVERHEAD_LINES = 4
# The summary's counts: these always, the others only when some step is in them.
SHOWN_COUNTS = ("ok", "changed", "failed", "running")
COUNT_ORDER = ("ok", "changed", "failed", "skipped", "cancelled", "running", "queued", "pending")
FINISHED_COUNTS = ("ok", "changed", "failed", "skipped", "cancelled")
FAILED = frozenset({StepState.FAILED, StepState.TIMED_OUT})


@dataclass(frozen=True)
class StepLine:
    """One step as the live display shows it: `note` is its error, or else its message, on one line."""

    resource: str
    state: str
    progress: float | None
    note: str
    failed: bool


@dataclass(frozen=True)
class Frame:
    """One picture of a workflow: its counts, and the step lines to draw (all of them unless `compact`)."""

    workflow_id: str
    name: str
    state: str
    done: int
    total: int
    counts: dict[str, int]
    elapsed_s: float
    compact: bool
    lines: tuple[StepLine, ...]
    # Compact only: running and failed steps left out for want of room.
    hidden_running: int = 0
    hidden_failed: int = 0

    def summary(self) -> str:
        """`12/1000 done  ok=3 changed=9 failed=0 running=20 queued=968`."""
        shown = [k for k in COUNT_ORDER if k in SHOWN_COUNTS or self.counts.get(k)]
        return f"{self.done}/{self.total} done  " + " ".join(f"{k}={self.counts.get(k, 0)}" for k in shown)

    def hidden(self) -> str:
        """The line under a compact frame's steps: what it had no room for (empty when nothing)."""
        left_out = ((self.hidden_running, "running"), (self.hidden_failed, "failed"))
        return " and ".join(f"{n} more {what}" for n, what in left_out if n)


# The summary count of a step in each state but `succeeded`, which counts as `changed` or `ok`.
_COUNT_OF = {
    StepState.FAILED: "failed",
    StepState.TIMED_OUT: "failed",
    StepState.SKIPPED: "skipped",
    StepState.CANCELLED: "cancelled",
    StepState.STARTED: "running",
    StepState.QUEUED: "queued",
    StepState.PENDING: "pending",
}


def count(step: StepView) -> str:
    """The summary count a step adds to: its recap outcome once finished, else running, queued or pending."""
    if step.state == StepState.SUCCEEDED:
        return "changed" if step.changed else "ok"
    return _COUNT_OF[step.state]


def fits(steps: int, height: int, overhead: int = FRAME_OVERHEAD_LINES) -> bool:
    """Whether a line per step fits in `height` lines besides `overhead` lines of other text."""
    return steps + overhead <= height


def step_line(step: StepView) -> StepLine:
    note = step.error or step.message or ""
    lines = note.strip().splitlines()
    return StepLine(
        resource=step.resource,
        state=str(step.state),
        progress=100.0 if step.state in FINISHED_STEP else step.progress,
        note=lines[0] if lines else "",
        failed=step.state in FAILED,
    )


def share(running: int, failed: int, room: int) -> tuple[int, int]:
    """How many running and failed steps to show in `room` lines: each gets half when both need more,
    and what one leaves unused goes to the other."""
    room = max(0, room)
    if running + failed <= room:
        return running, failed
    half = room // 2
    if running <= half:
        return running, room - running
    if failed <= room - half:
        return room - failed, failed
    return half, room - half


class Display:
    """The live display's model: `frame(view, now)` for each snapshot of the workflow followed."""

    def __init__(self, height: int, started_s: float) -> None:
        self.height = height
        self.started_s = started_s

    def frame(self, view: WorkflowView, now_s: float) -> Frame:
        steps = view.steps or []
        counts: dict[str, int] = dict.fromkeys(COUNT_ORDER, 0)
        running: list[StepView] = []
        failed: list[StepView] = []
        for s in steps:  # one pass: at 10,000 steps this is most of a frame's cost
            kind = count(s)
            counts[kind] += 1
            if kind == "running":
                running.append(s)
            elif kind == "failed":
                failed.append(s)
        compact = not fits(len(steps), self.height)
        hidden_running = hidden_failed = 0
        shown: Sequence[StepView] = steps
        if compact:
            show_running, show_failed = share(len(running), len(failed), self.height - FRAME_OVERHEAD_LINES)
            shown = [*running[:show_running], *failed[:show_failed]]
            hidden_running, hidden_failed = len(running) - show_running, len(failed) - show_failed
        return Frame(
            workflow_id=view.id,
            name=view.name,
            state=str(view.state),
            done=sum(counts[k] for k in FINISHED_COUNTS),
            total=len(steps),
            counts={k: n for k, n in counts.items() if n},
            elapsed_s=max(0.0, now_s - self.started_s),
            compact=compact,
            lines=tuple(step_line(s) for s in shown),
            hidden_running=hidden_running,
            hidden_failed=hidden_failed,
        )


@dataclass(frozen=True)
class FinalTable:
    """The steps the table after `apply --wait` lists: all of them, or (`compact`) all but the unchanged
    ones, which are only counted."""

    steps: tuple[StepView, ...]
    unchanged: int
    compact: bool


def final_table(steps: Sequence[StepView], height: int | None, overhead: int) -> FinalTable:
    """All `steps` when they fit in `height` lines besides `overhead` (or `height` is None: no terminal),
    else those that failed, did not finish, were cancelled or skipped, or changed something."""
    if height is None or fits(len(steps), height, overhead):
        return FinalTable(tuple(steps), 0, compact=False)
    listed = tuple(s for s in steps if recap.outcome(s) != "ok")
    return FinalTable(listed, len(steps) - len(listed), compact=True)

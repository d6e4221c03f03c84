"""How the CLI shows things: tables, the live display of `apply --wait`, JSON documents."""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Span, Text

from common.models import (
    FINISHED_WORKFLOW,
    AgentView,
    CheckResult,
    StepLog,
    StepView,
    WorkflowView,
)
from engine import display, recap
from workflows.registry import Registry, action_word, default_registry


def _console(stderr: bool = False) -> Console:
    """Rich's console; when the output is not a terminal (a log, a pipe) lines are not cut at 80 columns."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)
    return console


console = _console()
errors = _console(stderr=True)

_STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "aborted": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "skipped": "yellow",
    "started": "cyan",
    "running": "cyan",
    "active": "green",
    "backup": "cyan",
    "unavailable": "red",
}


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def warn(message: str) -> None:
    """A warning on stderr: something the operator should know, which did not stop the command."""
    errors.print(f"[yellow]warning:[/] {escape(message)}")


def _ago(value: datetime) -> str:
    """`value` and how long ago it was, for a `last seen` column: `2024-05-01 12:00:01 (3s ago)`."""
    seconds = max(0.0, (datetime.now(UTC) - value.replace(tzinfo=value.tzinfo or UTC)).total_seconds())
    if seconds < 120:
        age = f"{seconds:.0f}s"
    elif seconds < 7200:
        age = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        age = f"{seconds / 3600:.0f}h"
    else:
        age = f"{seconds / 86400:.0f}d"
    return f"{_when(value)} ({age} ago)"


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _state(value: str) -> str:
    style = _STATE_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def _duration(step: StepView) -> str:
    if step.started_at and step.finished_at:
        return f"{(step.finished_at - step.started_at).total_seconds():.2f}s"
    return "-"


def workflows_table(views: Sequence[WorkflowView], title: str) -> None:
    table = Table(title=title)
    for column in ("id", "name", "state", "created", "finished"):
        table.add_column(column)
    for view in views:
        table.add_row(view.id, view.name, _state(view.state), _when(view.created_at), _when(view.finished_at))
    console.print(table)


def workflow_detail(view: WorkflowView) -> None:
    """`workflows show`: the workflow's line and a table of all its steps."""
    _workflow_line(view)
    _steps_table(view.steps or [])


def workflow_result(view: WorkflowView, counts: recap.Recap) -> None:
    """The table after `apply --wait`: every step when they fit the terminal, else only the steps that did
    not end unchanged, a line that counts the others, then the recap."""
    _workflow_line(view)
    steps = view.steps or []
    height = console.size.height if console.is_terminal else None
    chosen = display.final_table(steps, height, overhead=FINAL_OVERHEAD_LINES + len(counts))
    if chosen.compact:
        _steps_lines(chosen.steps)
        console.print(
            f"{chosen.unchanged:,} of {len(steps):,} steps unchanged, not listed; "
            f"all of them: converge workflows show {view.id}",
            highlight=False,
        )
    else:
        _steps_table(chosen.steps)
    recap_report(counts)


# Lines of the result besides its steps and the recap's lines: the workflow's line, the table's borders
# and header, the line counting what is not listed, the recap's title and the prompt's line.
FINAL_OVERHEAD_LINES = 8
_STEP_COLUMNS = ("resource", "role", "state", "changed", "attempt", "agent", "progress", "took", "message")


def _workflow_line(view: WorkflowView) -> None:
    console.print(
        f"workflow [bold]{view.id}[/] ({view.name}): {_state(view.state)}, created {_when(view.created_at)}"
        + (f", finished {_when(view.finished_at)}" if view.finished_at else "")
    )


def _step_cells(step: StepView) -> list[str]:
    """A step's cells, plain text, in the order of _STEP_COLUMNS."""
    changed = "-" if step.changed is None else ("yes" if step.changed else "no")
    progress = "-" if step.progress is None else f"{step.progress:.0f}%"
    note = _one_line(step.error or step.message or "")
    return [
        step.resource,
        step.role,
        str(step.state),
        changed,
        str(step.attempt),
        step.agent or "-",
        progress,
        _duration(step),
        note,
    ]


def _steps_table(steps: Sequence[StepView]) -> None:
    table = Table()
    for column in _STEP_COLUMNS:
        table.add_column(column)
    for step in steps:
        cells = [escape(cell) for cell in _step_cells(step)]
        cells[2] = _state(step.state)
        if step.error:
            cells[-1] = f"[red]{cells[-1]}[/]"
        table.add_row(*cells)
    console.print(table)


def _steps_lines(steps: Sequence[StepView]) -> None:
    """The steps as aligned lines, without a box: drawing a rich table of thousands of rows takes
    seconds (1.7 s for 1,000); one text with a style span per state takes milliseconds."""
    if not steps:
        return
    rows = [_step_cells(step) for step in steps]
    widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(_STEP_COLUMNS)]
    lines = [" ".join(c.ljust(w) for c, w in zip(_STEP_COLUMNS, widths, strict=True)).rstrip()]
    spans = [Span(0, len(lines[0]), "bold")]
    offset = len(lines[0]) + 1
    state_at = sum(widths[:2]) + 2  # where the state column starts in a line
    note_at = sum(widths[:-1]) + len(widths) - 1
    for step, row in zip(steps, rows, strict=True):
        padded = (cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False))
        line = " ".join([*padded, row[-1]])
        style = _STATE_STYLE.get(row[2])
        if style:
            spans.append(Span(offset + state_at, offset + state_at + len(row[2]), style))
        if step.error and row[-1]:
            spans.append(Span(offset + note_at, offset + note_at + len(row[-1]), "red"))
        lines.append(line.rstrip())
        offset += len(lines[-1]) + 1
    console.print(Text("\n".join(lines), spans=spans), soft_wrap=True)


NOTE_CHARS = 100
FAILED_TAIL_LINES = 10


def _one_line(text: str) -> str:
    """A table cell: the first line, cut; the whole of it is in `--json` and `workflows logs`."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    more = len(lines) > 1 or len(line) > NOTE_CHARS
    return line[:NOTE_CHARS] + (" ..." if more else "")


def failed_output(view: WorkflowView, logs: Sequence[StepLog]) -> None:
    """Under a workflow's table: the last lines each failed step's command wrote."""
    by_id = {log.id: log for log in logs}
    for step in view.steps or []:
        found = by_id.get(step.id)
        if step.state not in ("failed", "timed_out") or found is None or found.output is None:
            continue
        lines = found.output.lines[-FAILED_TAIL_LINES:]
        console.print(
            f"\n[bold]{escape(step.resource)}[/] (attempt {found.output.attempt}), last {len(lines)} lines; "
            f"all of it: converge workflows logs {view.id} {escape(step.resource)}",
            highlight=False,
        )
        for line in lines:
            console.print(_output_line(line), markup=False, highlight=False)


def step_logs(logs: Sequence[StepLog]) -> None:
    """`converge workflows logs`: each step's output, its lines with their time and stream."""
    for log in logs:
        output = log.output
        attempt = f", attempt {output.attempt}" if output else ""
        console.print(f"[bold]== {escape(log.resource)}[/] ({_state(log.state)}{attempt})", highlight=False)
        if output is None or not output.lines:
            console.print("  (no output)" if output else "  (no output recorded: the step has not finished)")
            continue
        if output.cut_bytes:
            console.print(f"  ... {output.cut_bytes:,} bytes before these were cut", highlight=False)
        for line in output.lines:
            console.print(_output_line(line), markup=False, highlight=False)


def _output_line(line: tuple[float, str, str]) -> str:
    at, stream, text = line
    when = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
    return f"  {when} {stream} | {text}"


def agents_table(views: Sequence[AgentView]) -> None:
    table = Table(title="agents")
    for column in ("id", "roles", "state", "leader of", "running", "host", "pid", "last seen"):
        table.add_column(column)
    for a in views:
        table.add_row(
            a.id,
            ", ".join(a.roles),
            _state(a.state),
            ", ".join(
                f"{role} (epoch {a.epochs[role]})" if role in a.epochs else role for role in a.leader_of
            )
            or "-",
            str(a.running),
            a.host,
            str(a.pid),
            _ago(a.last_seen),
        )
    console.print(table)
    for a in views:
        for problem in a.extension_problems:
            console.print(f"agent {a.id}: extension not loaded, runs the built-ins: {problem}", markup=False)


def plan_report(results: Sequence[CheckResult]) -> None:
    table = Table(title="plan")
    for column in ("resource", "action", "agent"):
        table.add_column(column)
    for r in results:
        action = "[red]error[/]" if r.error else (_action(r) if r.change else "-")
        table.add_row(r.resource, action, r.agent)
    console.print(table)
    for r in results:
        if r.error:
            errors.print(f"[red]{r.resource}[/]: {r.error}")
            continue
        if r.note:
            console.print(f"[bold]{r.resource}[/]: {r.note}", highlight=False)
        if r.change and r.change.action != "none" and r.change.diff:
            console.print(f"[bold]{r.resource}[/] ({_action(r)})")
            console.print(r.change.diff, markup=False, highlight=False)
    console.print(plan_summary(results), highlight=False)


@functools.cache
def _kinds() -> Registry:
    """The built-in kinds, for their wording only: built on first use, not at import."""
    return default_registry()


def _action(result: CheckResult) -> str:
    """The plan's word for a change: its action, except that a command `run`s (plan --json keeps `create`)."""
    assert result.change is not None
    return action_word(_kinds(), result.resource, result.change.action)


def plan_summary(results: Sequence[CheckResult]) -> str:
    """`plan`'s last line: "2 to create, 1 to change, 5 unchanged" (and the resources it could not check)."""
    actions = Counter("error" if r.error else (_action(r) if r.change else "none") for r in results)
    line = f"{actions['create']} to create, "
    line += f"{actions['run']} to run, " if actions["run"] else ""  # commands: they run, creating nothing
    line += f"{actions['update']} to change, {actions['none']} unchanged"
    if actions["error"]:
        line += f", {actions['error']} could not be checked"
    return line


def recap_report(counts: recap.Recap) -> None:
    """The recap that ends `apply --wait`: a line per role and one for the total."""
    console.print("recap:", style="bold")
    for line in recap.lines(counts):
        console.print(f"  {line}", highlight=False)


# The engine is asked at most this often, counted from the end of the last answer: a slow engine gets
# fewer requests, not more of them queued.
POLL_INTERVAL_S = 0.25
REFRESH_PER_SECOND = 4


def follow(fetch: Callable[[], WorkflowView], timeout_s: float | None, live: bool) -> WorkflowView:
    """Poll a workflow until it finishes (or `timeout_s` passes); when `live`, draw it on stderr as it
    goes (engine.display says what) if stderr is a terminal, else draw nothing at all."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if not (live and errors.is_terminal):
        return _poll(fetch, deadline, lambda view: None)
    model = display.Display(height=errors.size.height, started_s=time.monotonic())
    with Live(console=errors, refresh_per_second=REFRESH_PER_SECOND, transient=True) as screen:

        def draw(view: WorkflowView) -> None:
            model.height = errors.size.height  # the terminal may have been resized
            screen.update(live_frame(model.frame(view, time.monotonic())))

        return _poll(fetch, deadline, draw)


def _poll(
    fetch: Callable[[], WorkflowView], deadline: float | None, draw: Callable[[WorkflowView], None]
) -> WorkflowView:
    while True:
        view = fetch()
        answered = time.monotonic()
        draw(view)
        if view.state in FINISHED_WORKFLOW or (deadline is not None and answered >= deadline):
            return view
        next_poll = answered + POLL_INTERVAL_S
        if deadline is not None:
            next_poll = min(next_poll, deadline)  # one last look when the timeout runs out
        time.sleep(max(0.0, next_poll - time.monotonic()))


def live_frame(frame: display.Frame) -> RenderableType:
    """What the live display draws for one frame: a header, the summary bar and the step lines."""
    header = Text.from_markup(
        f"workflow [bold]{escape(frame.workflow_id)}[/] ({escape(frame.name)}): {_state(frame.state)}, "
        f"{frame.elapsed_s:.1f}s"
    )
    summary = Table.grid(padding=(0, 1))
    summary.add_row(ProgressBar(total=max(1, frame.total), completed=frame.done, width=30), frame.summary())
    steps = Table.grid(padding=(0, 1))
    steps.add_column(no_wrap=True, overflow="ellipsis", max_width=50)
    steps.add_column(no_wrap=True)
    steps.add_column(no_wrap=True, justify="right")
    steps.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for line in frame.lines:
        progress = "" if line.progress is None else f"{line.progress:.0f}%"
        note = Text(line.note, style="red" if line.failed else "")
        steps.add_row(escape(line.resource), _state(line.state), progress, note)
    parts: list[RenderableType] = [header, summary, steps]
    if frame.hidden():
        parts.append(Text(f"... {frame.hidden()}", style="dim"))
    return Group(*parts)

"""How the CLI shows things: tables, live progress bars, JSON documents."""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from common.models import (
    FINISHED_STEP,
    FINISHED_WORKFLOW,
    AgentView,
    CheckResult,
    StepLog,
    StepView,
    WorkflowView,
)
from engine import recap
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
    console.print(
        f"workflow [bold]{view.id}[/] ({view.name}): {_state(view.state)}, created {_when(view.created_at)}"
        + (f", finished {_when(view.finished_at)}" if view.finished_at else "")
    )
    table = Table()
    for column in ("resource", "role", "state", "changed", "attempt", "agent", "progress", "took", "message"):
        table.add_column(column)
    for step in view.steps or []:
        changed = "-" if step.changed is None else ("yes" if step.changed else "no")
        progress = "-" if step.progress is None else f"{step.progress:.0f}%"
        note = escape(_one_line(step.error or step.message or ""))
        table.add_row(
            step.resource,
            step.role,
            _state(step.state),
            changed,
            str(step.attempt),
            step.agent or "-",
            progress,
            _duration(step),
            f"[red]{note}[/]" if step.error else note,
        )
    console.print(table)


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
        elif r.change and r.change.action != "none" and r.change.diff:
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


def follow(fetch: Callable[[], WorkflowView], timeout_s: float | None, live: bool) -> WorkflowView:
    """Poll a workflow until it finishes (or `timeout_s` passes), with one progress bar per step."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    view = fetch()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[note]}"),
        console=errors,
        disable=not live,
        transient=False,
    ) as progress:
        bars: dict[str, TaskID] = {}
        while True:
            _update_bars(progress, bars, view)
            if view.state in FINISHED_WORKFLOW or (deadline is not None and time.monotonic() > deadline):
                return view
            time.sleep(0.2)
            view = fetch()


def _update_bars(progress: Progress, bars: dict[str, TaskID], view: WorkflowView) -> None:
    for step in view.steps or []:
        if step.id not in bars:
            bars[step.id] = progress.add_task(step.resource, total=100, note="")
        done = 100.0 if step.state in FINISHED_STEP else (step.progress or 0.0)
        note = f"{step.state}" + (f" - {step.message}" if step.message else "")
        if step.error:
            note = f"{step.state} - {step.error}"
        progress.update(bars[step.id], completed=done, note=note)

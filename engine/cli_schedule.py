"""`converge schedule` and `converge compliance`: desired states checked again at an interval, and what
the last check of each found (engine.scheduler, through the API)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from common import durations
from common.errors import BadInput
from engine import render
from engine.cli import client_for, handle_errors, json_option, read_desired, url_option


@click.group()
def schedule() -> None:
    """Desired states the engine checks again at an interval: a plan run by the agents, recorded as a
    compliance report (`converge compliance`); in `enforce` mode a drift is corrected by a workflow."""


@schedule.command("set")
@click.argument("file")
@click.option("--every", "every", required=True, metavar="DURATION", help="How often: 90s, 30m, 1h, 1d...")
@click.option(
    "--mode",
    type=click.Choice(["report", "enforce"]),
    default="report",
    show_default=True,
    help="report: only record what drifted; enforce: also apply the desired state again when it drifted.",
)
@json_option
@url_option
@handle_errors
def schedule_set(file: str, every: str, mode: str, as_json: bool, url: str | None) -> None:
    """Check the desired state in FILE every DURATION, named by its metadata.name (a schedule of the same
    name is replaced). The first check runs at once."""
    durations.parse(every, what="--every")  # bad input before anything is sent
    given = read_desired(file)
    if len(given.files) != 1 or Path(file).is_dir():
        raise BadInput(f"{file} is a folder: `converge schedule set` takes one desired-state file")
    made, replaced = client_for(url).set_schedule(given.files[0].source, file, every, mode)
    if as_json:
        render.emit_json({"schedule": made, "replaced": replaced})
        return
    verb = "replaced" if replaced else "set"
    click.echo(f"schedule {made['name']} {verb}: checked every {made['every']}, mode {mode}; first check now")
    click.echo("`converge compliance` shows what each check found")


@schedule.command("list")
@json_option
@url_option
@handle_errors
def schedule_list(as_json: bool, url: str | None) -> None:
    """Every schedule: its interval, mode, and when it was last checked and is next."""
    found = client_for(url).schedules()
    if as_json:
        render.emit_json([{k: v for k, v in s.items() if k != "report"} for s in found])
        return
    if not found:
        click.echo("no schedule: `converge schedule set FILE --every 1h` checks a desired state every hour")
        return
    table = Table(
        "NAME", "EVERY", "MODE", "STATE", "CHECKED", "NEXT", "FILE", title=f"schedules ({len(found)})"
    )
    for s in found:
        cells = (
            s["name"],
            s["every"],
            s["mode"],
            s["state"],
            _when(s["checked_at"]),
            _when(s["next_at"]),
            s["filename"],
        )
        table.add_row(*(escape(str(c)) for c in cells))
    render.console.print(table)


@schedule.command("remove")
@click.argument("name")
@url_option
@handle_errors
def schedule_remove(name: str, url: str | None) -> None:
    """Stop checking the desired state NAME; its compliance report goes with it."""
    client_for(url).remove_schedule(name)
    click.echo(f"schedule {name} removed")


@click.command()
@json_option
@url_option
@handle_errors
def compliance(as_json: bool, url: str | None) -> None:
    """Every scheduled desired state: compliant or drifted, with the diff of each drifted resource and
    since when it drifted."""
    found = client_for(url).schedules()
    if as_json:
        render.emit_json(found)
        return
    if not found:
        click.echo(
            "nothing is scheduled: `converge schedule set FILE --every 1h` checks a desired state every hour"
        )
        return
    table = Table("DESIRED STATE", "STATE", "DRIFTED", "CHECKED", "MODE", title="compliance")
    for s in found:
        table.add_row(
            *(
                escape(str(c))
                for c in (s["name"], s["state"], s["drifted"], _when(s["checked_at"]), s["mode"])
            )
        )
    render.console.print(table)
    for s in found:
        _details(s)


def _details(s: dict[str, Any]) -> None:
    for entry in s["report"]:
        where = f"{s['name']}: {entry['resource']} on {entry['agent']}"
        if "error" in entry:
            render.console.print(f"[red]{escape(where)}: cannot check: {escape(entry['error'])}[/red]")
            continue
        render.console.print(
            f"[yellow]{escape(where)}[/yellow] drifted since {_when(entry['since'])} ({entry['action']})"
        )
        if entry.get("diff"):
            click.echo(entry["diff"].rstrip("\n"))
    if s.get("error") and not s["report"]:
        render.console.print(f"[red]{escape(s['name'])}: the last check failed: {escape(s['error'])}[/red]")
    if s.get("workflow_id") and s["mode"] == "enforce":
        click.echo(f"{s['name']}: last corrected by workflow {s['workflow_id']}")


def _when(at: str | None) -> str:
    return "-" if at is None else datetime.fromisoformat(at).isoformat(timespec="seconds")

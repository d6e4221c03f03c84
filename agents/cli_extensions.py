"""`converge-agent extensions` and `converge-agent capabilities`: what the extensions change, and this
host's capability document (or its differences from an expected one, through the capability test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agents import config, extensions
from agents.capabilities import document_from_file, host_document
from common import cli as common_cli
from common.errors import BadInput, Refused
from workflows.capabilities import CAPABILITY_TEST, CapabilityError, to_json, to_xml

handle_errors = common_cli.handle_errors("converge-agent")


@click.command("extensions")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@handle_errors
def extensions_cmd(as_json: bool) -> None:
    """What each extension file overrides, and each one that was refused or failed to load."""
    settings = config.load().settings
    registry, loaded = extensions.agent_registry(settings)
    if as_json:
        files = [
            {"path": str(f.path), "state": f.state, "overrides": f.overrides, "problem": f.problem}
            for f in loaded.files
        ]
        problems = extensions.announced_problems(registry, loaded)
        document = {"folder": str(loaded.folder), "policy": loaded.policy, "files": files}
        click.echo(json.dumps(document | {"problems": problems}, indent=2))
        return
    console = Console()
    click.echo(f"extensions folder {loaded.folder}, execution policy {loaded.policy}")
    if loaded.files:
        table = Table(title="extensions")
        for column in ("file", "state", "overrides"):
            table.add_column(column)
        for f in loaded.files:
            table.add_row(f.path.name, f.state, "\n".join(f.overrides) or f.problem or "nothing")
        console.print(table)
    else:
        click.echo("no extension files: the agent runs the built-ins")
    for problem in extensions.announced_problems(registry, loaded):
        console.print(f"not loaded: {problem}", markup=False)


@click.command("capabilities")
@click.option("--json", "as_json", is_flag=True, help="The document as JSON instead of XML.")
@click.option(
    "--compare",
    "expected",
    type=click.Path(path_type=Path),
    default=None,
    help="An expected capability document (XML or JSON): print how this host differs from it, through the "
    "capability test (with the extensions); exit code 1 when it does.",
)
@handle_errors
def capabilities_cmd(as_json: bool, expected: Path | None) -> None:
    """This host's capability document: Debian packages, OS release and updates, file-type associations
    (or the agent setting `capabilities_file`)."""
    settings = config.load().settings
    doc = document_from_file(settings.capabilities_file) if settings.capabilities_file else host_document()
    if expected is None:
        click.echo(to_json(doc) if as_json else to_xml(doc), nl=False)
        return
    registry, loaded = extensions.agent_registry(settings)
    for problem in extensions.announced_problems(registry, loaded):
        click.echo(f"converge-agent: warning: extension not loaded: {problem}", err=True)
    try:
        expected_text = expected.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the expected capability document {expected}: {exc.strerror}") from exc
    try:
        found = list(registry.validator(CAPABILITY_TEST)(expected_text, to_xml(doc)))
    except CapabilityError as exc:
        raise BadInput(str(exc)) from exc
    except Exception as exc:  # an extension's validator with a bug: its words, not a traceback
        raise Refused(
            f"the capability test failed: {type(exc).__name__}: {exc}; see `converge-agent extensions` for "
            "the files that replace it"
        ) from exc
    if as_json:
        click.echo(json.dumps({"differences": [_as_json(d) for d in found]}, indent=2))
    else:
        for difference in found:
            click.echo(str(difference))
    if found:  # exit code 1 as a refusal has it, with the --json document left alone on stdout
        common_cli.fail("converge-agent", Refused.exit_code, f"this host differs from {expected}")
    if not as_json:
        click.echo(f"this host has the capabilities of {expected}")


def _as_json(difference: Any) -> Any:
    as_dict = getattr(difference, "as_dict", None)
    return as_dict() if callable(as_dict) else str(difference)

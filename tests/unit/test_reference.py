"""docs/reference.md against the command lines themselves: every command, every option, every setting and
every kind the code has is in the reference, and the reference names none the code does not have."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from agents.cli import main as agent_cli
from agents.config import KEYS as AGENT_KEYS
from agents.config import env_name
from common.settings import ENV_PREFIX, Settings
from engine.cli import main as converge_cli
from workflows.registry import default_registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
REFERENCE = (DOCS / "reference.md").read_text(encoding="utf-8")
HEADING = re.compile(r"^#+ `(converge(?:-agent)?(?: [a-z-]+)*)`", re.MULTILINE)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def commands() -> Iterator[tuple[str, click.Command]]:
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                yield from walk(sub, f"{path} {name}")

    yield from walk(converge_cli, "converge")
    yield from walk(agent_cli, "converge-agent")


def options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
    return names - {"--help"}


def sections() -> dict[str, str]:
    """Each command's section: from its heading to the next heading."""
    found = {}
    for match in HEADING.finditer(REFERENCE):
        rest = REFERENCE[match.end() :]
        following = re.search(r"^#", rest, re.MULTILINE)
        found[match.group(1)] = rest[: following.start() if following else len(rest)]
    return found


def usage(section: str) -> str:
    """The section's first code block: the command's synopsis."""
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block, f"no synopsis block in:\n{section[:300]}"
    return block.group(1)


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    documented, actual = set(sections()), {path for path, _ in commands()}

    assert not actual - documented, f"commands missing from docs/reference.md: {sorted(actual - documented)}"
    assert not documented - actual, f"docs/reference.md documents no such command: {documented - actual}"


def test_each_synopsis_lists_exactly_the_options_of_its_command() -> None:
    documented = sections()
    wrong = {}
    for path, command in commands():
        shown = set(OPTION.findall(usage(documented[path]))) if path in documented else set()
        if path in documented and shown != options(command):
            wrong[path] = {"missing": options(command) - shown, "no such option": shown - options(command)}

    assert not wrong, wrong


def test_every_setting_and_kind_is_in_the_reference() -> None:
    engine = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    agent = {env_name(key) for key in AGENT_KEYS}
    kinds = {f"`{kind}`" for kind in default_registry().kinds()}

    missing = sorted(name for name in engine | agent | kinds if name not in REFERENCE)

    assert not missing, f"not in docs/reference.md: {missing}"


def test_every_exit_code_of_the_cli_is_in_the_reference() -> None:
    table = REFERENCE[REFERENCE.index("## Exit codes") :]
    for code in (0, 1, 2, 3, 4, 130):
        assert re.search(rf"^\| {code} \|", table, re.MULTILINE), code

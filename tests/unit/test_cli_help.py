"""`-h` is `--help` on every command of both CLIs, walked from their click groups."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from agents.cli import main as agent_main
from engine.cli import main as engine_main


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        elif command is not None:
            yield (*path, name)


@pytest.mark.parametrize("cli", [engine_main, agent_main], ids=["converge", "converge-agent"])
def test_every_command_answers_dash_h_with_its_help(cli: click.Group) -> None:
    paths = list(commands(cli))
    assert len(paths) > 5
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "-h"])
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith("Usage:"), (path, result.output)

"""`converge help` and `converge-agent help` print what `-h` prints, and an unknown command is bad input."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from agents.cli import main as agent_main
from engine.cli import main as converge_main


@pytest.mark.parametrize(
    ("main", "path"),
    [(converge_main, []), (converge_main, ["workflows", "list"]), (agent_main, ["config", "set"])],
)
def test_help_prints_what_dash_h_prints(main: click.Group, path: list[str]) -> None:
    runner = CliRunner()
    by_help = runner.invoke(main, ["help", *path])
    by_option = runner.invoke(main, [*path, "-h"])

    assert by_help.exit_code == 0, by_help.output
    assert by_help.output == by_option.output


def test_help_of_an_unknown_command_says_where_to_look() -> None:
    result = CliRunner().invoke(converge_main, ["help", "workflows", "nope"])

    assert result.exit_code == 2
    assert "converge workflows has no command 'nope'" in result.output
    assert "`converge workflows -h` lists them" in result.output

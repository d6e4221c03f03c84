"""Bad input given to `converge` on its command line reads as the project's other errors: exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_a_folder_without_desired_state_files_is_bad_input_in_the_projects_words(
    command: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not yaml")
    result = CliRunner().invoke(main, [command, str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"converge: {tmp_path}: is a folder without *.yaml or *.yml files: put the desired state's files in it"
    )
    assert "Invalid value" not in result.output and "Usage:" not in result.output


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_a_folder_without_desired_state_files_under_json_is_the_json_error_document(
    command: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, [command, str(tmp_path), "--json"])
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and "is a folder without" in document["error"]
    assert document["problems"][0]["file"] == str(tmp_path)


def test_an_unquoted_mode_is_refused_with_the_hint_before_anything_is_sent(tmp_path: Path) -> None:
    desired = tmp_path / "estate.yaml"
    desired.write_text(
        "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: m}\nresources:\n"
        "  - {kind: file, name: f, role: web, spec: {path: /f, content: x, mode: 0644}}\n"
    )
    result = CliRunner().invoke(main, ["plan", str(desired), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert 'mode 420 is the number YAML reads from 0644 without quotes; write mode: "0644"' in result.stderr

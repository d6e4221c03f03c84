"""`converge-agent extensions` and `converge-agent capabilities`: what they print, and bad input or a buggy
extension as a message and an exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agents import config
from agents.cli import main


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in config.KEYS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "agent.toml"))
    extensions = tmp_path / "extensions"
    extensions.mkdir()
    monkeypatch.setenv("CONVERGE_AGENT_EXTENSIONS_DIR", str(extensions))
    actual = tmp_path / "actual.json"
    actual.write_text(json.dumps({"applications": {"nginx": "1.22"}}))
    monkeypatch.setenv("CONVERGE_AGENT_CAPABILITIES_FILE", str(actual))
    return extensions


def agent(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_extensions_lists_what_each_file_overrides_and_what_failed(folder: Path) -> None:
    (folder / "a.py").write_text("def register(ext):\n    ext.before('command', 'apply', print)\n")
    (folder / "b.py").write_text("import nowhere_to_be_found\n")

    table = agent("extensions")
    document = json.loads(agent("extensions", "--json").stdout)

    assert table.exit_code == 0
    assert "runs before command.apply" in table.stdout and "not loaded:" in table.stdout
    assert [(Path(f["path"]).name, f["state"], f["overrides"]) for f in document["files"]] == [
        ("a.py", "loaded", ["runs before command.apply"]),
        ("b.py", "failed", []),
    ]
    assert document["policy"] == "restricted" and len(document["problems"]) == 1


def test_the_capability_document_of_the_setting_is_printed_as_xml_or_json(folder: Path) -> None:
    xml = agent("capabilities")
    as_json = agent("capabilities", "--json")
    assert '<application name="nginx" version="1.22" />' in xml.stdout
    assert json.loads(as_json.stdout)["applications"] == {"nginx": "1.22"}


def test_a_buggy_extension_validator_is_exit_1_with_a_message(folder: Path, tmp_path: Path) -> None:
    (folder / "bug.py").write_text(
        "def register(ext):\n    ext.validator('capability_test', lambda e, a: 1 / 0)\n"
    )
    expected = tmp_path / "expected.json"
    expected.write_text("{}")

    result = agent("capabilities", "--compare", str(expected))

    assert result.exit_code == 1
    assert "the capability test failed: ZeroDivisionError" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("text", "message"),
    [("<capabilities><", "is not well-formed XML"), ("nope", "is neither XML nor valid JSON")],
)
def test_a_bad_expected_document_is_bad_input(folder: Path, tmp_path: Path, text: str, message: str) -> None:
    expected = tmp_path / "expected.xml"
    expected.write_text(text)
    result = agent("capabilities", "--compare", str(expected))
    assert result.exit_code == 2 and message in result.stderr


def test_a_missing_expected_document_is_bad_input(folder: Path, tmp_path: Path) -> None:
    result = agent("capabilities", "--compare", str(tmp_path / "none.xml"))
    assert result.exit_code == 2 and "cannot read the expected capability document" in result.stderr

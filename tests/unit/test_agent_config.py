"""`converge-agent config`: the file, its precedence under env and options, and every bad input as exit 2."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agents import config
from agents.cli import main


@pytest.fixture
def agent_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file in tmp_path (not created yet), and an environment without agent settings."""
    for key in config.KEYS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "etc" / "agent.toml"
    monkeypatch.setenv(config.CONFIG_ENV, str(path))
    return path


def agent(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def shown() -> dict[str, Any]:
    result = agent("config", "show", "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_show_lists_every_setting_with_its_default_and_the_file(agent_file: Path) -> None:
    document = shown()
    assert document["file"] == str(agent_file)
    assert set(document["settings"]) == set(config.KEYS)
    assert document["settings"]["throttle"] == {"value": 20, "source": "default"}
    assert document["settings"]["step_timeout_s"] == {"value": 3600.0, "source": "default"}
    assert {s["source"] for s in document["settings"].values()} == {"default"}


def test_show_prints_a_table_of_key_value_and_source(agent_file: Path) -> None:
    result = agent("config", "show")
    assert result.exit_code == 0
    assert "throttle" in result.output and "default" in result.output


def test_set_writes_typed_values_and_show_says_they_come_from_the_file(agent_file: Path) -> None:
    result = agent("config", "set", "throttle=3", "step_timeout_s=120", "roles=web,db", "task_events=off")
    assert result.exit_code == 0, result.output
    assert "throttle: unset -> 3" in result.output
    written = tomllib.loads(agent_file.read_text())
    assert written == {"throttle": 3, "step_timeout_s": 120.0, "roles": ["web", "db"], "task_events": False}
    settings = shown()["settings"]
    assert settings["throttle"] == {"value": 3, "source": "file"}
    assert settings["roles"] == {"value": ["web", "db"], "source": "file"}
    assert settings["loglevel"]["source"] == "default"


def test_set_keeps_the_keys_it_does_not_name(agent_file: Path) -> None:
    agent("config", "set", "throttle=3")
    agent("config", "set", "loglevel=DEBUG")
    assert tomllib.loads(agent_file.read_text()) == {"throttle": 3, "loglevel": "DEBUG"}


def test_env_overrides_the_file_and_set_says_so(agent_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_THROTTLE", "7")
    result = agent("config", "set", "throttle=3")
    assert result.exit_code == 0
    assert "CONVERGE_AGENT_THROTTLE=7 overrides it" in result.output
    assert shown()["settings"]["throttle"] == {"value": 7, "source": "env"}


def test_options_override_env_and_file(agent_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent("config", "set", "throttle=3", "loglevel=DEBUG")
    monkeypatch.setenv("CONVERGE_AGENT_THROTTLE", "7")
    resolved = config.load({"throttle": 9, "id": None})
    assert resolved.settings.throttle == 9
    assert resolved.sources["throttle"] == "option"
    assert resolved.sources["loglevel"] == "file"
    assert resolved.sources["id"] == "default"


def test_broker_url_from_its_env_variable_is_reported_as_env(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVERGE_BROKER_URL", "redis://elsewhere:6379/1")
    assert shown()["settings"]["broker_url"] == {"value": "redis://elsewhere:6379/1", "source": "env"}


def test_reset_removes_only_the_named_keys(agent_file: Path) -> None:
    agent("config", "set", "throttle=3", "loglevel=DEBUG")
    result = agent("config", "reset", "throttle")
    assert result.exit_code == 0
    assert tomllib.loads(agent_file.read_text()) == {"loglevel": "DEBUG"}
    assert shown()["settings"]["throttle"] == {"value": 20, "source": "default"}


def test_reset_without_keys_empties_the_file(agent_file: Path) -> None:
    agent("config", "set", "throttle=3", "loglevel=DEBUG")
    assert agent("config", "reset").exit_code == 0
    assert tomllib.loads(agent_file.read_text()) == {}


def test_reset_of_a_missing_file_creates_nothing(agent_file: Path) -> None:
    assert agent("config", "reset", "throttle").exit_code == 0
    assert not agent_file.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "throtle=3"], "unknown setting 'throtle'; did you mean 'throttle'?"),
        (["set", "nonsense=3"], "known: id, roles"),
        (["set", "throttle=0"], "throttle=0: Input should be greater than or equal to 1"),
        (["set", "throttle=abc"], "throttle=abc: Input should be a valid integer"),
        (["set", "task_events=maybe"], "task_events=maybe: Input should be a valid boolean"),
        (["set", "throttle"], "'throttle': expected KEY=VALUE"),
        (["set", "loglevel=DEBUG", "throttle=-1"], "throttle=-1"),
        (["reset", "bogus"], "unknown setting 'bogus'"),
        # each valid alone, not with the file they would make (throttle=3 is in it)
        (["set", "pool_min=4"], "pool_min (4) must be at most throttle (3)"),
        (["set", "pool_min=2", "throttle=1"], "pool_min (2) must be at most throttle (1)"),
        (["set", "heartbeat_ttl_s=2"], "heartbeat_ttl_s (2) must be longer than heartbeat_interval_s"),
        (["set", "pool_keepalive_s=0"], "pool_keepalive_s=0: Input should be greater than 0"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_file_byte_identical(
    agent_file: Path, args: list[str], message: str
) -> None:
    agent("config", "set", "throttle=3")
    before = agent_file.read_bytes()
    result = agent("config", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert agent_file.read_bytes() == before
    assert [p.name for p in agent_file.parent.iterdir()] == ["agent.toml"]  # no temporary file left


def test_invalid_toml_exits_2_naming_the_file_and_the_line(agent_file: Path) -> None:
    agent_file.parent.mkdir(parents=True)
    agent_file.write_text("throttle = 3\nloglevel = \n")
    for args in (["show"], ["set", "throttle=4"], ["reset"]):
        result = agent("config", *args)
        assert result.exit_code == 2
        assert f"{agent_file}: invalid TOML" in result.output and "line 2" in result.output
    assert agent_file.read_text() == "throttle = 3\nloglevel = \n"


def test_an_invalid_value_in_the_file_exits_2_naming_the_file(agent_file: Path) -> None:
    agent_file.parent.mkdir(parents=True)
    agent_file.write_text("throttle = 0\n")
    result = agent("config", "show")
    assert result.exit_code == 2
    assert f"throttle: Input should be greater than or equal to 1 (in {agent_file})" in result.output


def test_an_invalid_env_value_exits_2_naming_the_variable(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_THROTTLE", "many")
    result = agent("config", "show")
    assert result.exit_code == 2
    assert "(CONVERGE_AGENT_THROTTLE)" in result.output


def test_a_key_in_the_file_that_is_no_setting_is_reported(agent_file: Path) -> None:
    agent_file.parent.mkdir(parents=True)
    agent_file.write_text("throtle = 3\n")
    result = agent("config", "show", "--json")
    assert result.exit_code == 0
    assert "'throtle' is not a setting" in result.stderr


def test_a_file_whose_parent_is_a_file_exits_2_naming_it(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(config.CONFIG_ENV, str(blocker / "agent.toml"))
    result = agent("config", "set", "throttle=3")
    assert result.exit_code == 2
    assert (
        f"{blocker / 'agent.toml'}: Not a directory" in result.output and config.CONFIG_ENV in result.output
    )


def test_a_directory_that_refuses_the_temporary_file_exits_2_and_says_to_set_the_env_variable(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(config.tempfile, "mkstemp", refuse)
    result = agent("config", "set", "throttle=3")
    assert result.exit_code == 2
    assert f"cannot write {agent_file}: Permission denied; set {config.CONFIG_ENV}" in result.output


def test_a_failed_replace_leaves_the_file_and_no_temporary_file(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent("config", "set", "throttle=3")
    before = agent_file.read_bytes()

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config.os, "replace", fail)
    result = agent("config", "set", "throttle=4")
    assert result.exit_code == 2
    assert "No space left on device" in result.output
    assert agent_file.read_bytes() == before
    assert [p.name for p in agent_file.parent.iterdir()] == ["agent.toml"]


def test_write_keeps_the_mode_of_an_existing_file(agent_file: Path) -> None:
    agent("config", "set", "throttle=3")
    agent_file.chmod(0o644)
    agent("config", "set", "throttle=4")
    assert agent_file.stat().st_mode & 0o777 == 0o644


def test_run_without_any_role_exits_2(agent_file: Path) -> None:
    result = agent("run")
    assert result.exit_code == 2
    assert "no role" in result.output


def test_the_file_is_found_at_the_user_path_without_the_env_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "no-etc" / "agent.toml")
    assert config.config_path() == tmp_path / ".config" / "converge" / "agent.toml"
    system = tmp_path / "etc-agent.toml"
    system.write_text("")
    monkeypatch.setattr(config, "SYSTEM_CONFIG", system)
    assert config.config_path() == system


def test_reset_that_would_break_a_rule_between_settings_exits_2_and_leaves_the_file(agent_file: Path) -> None:
    assert agent("config", "set", "throttle=40", "pool_min=30").exit_code == 0
    before = agent_file.read_bytes()
    result = agent("config", "reset", "throttle")
    assert result.exit_code == 2
    assert "pool_min (30) must be at most throttle (20)" in result.output
    assert agent_file.read_bytes() == before


def test_the_pool_grows_up_to_the_throttle_from_pool_min_or_holds_the_throttle_without_autoscale() -> None:
    from agents.worker import pool_args

    assert pool_args(config.AgentSettings(throttle=20, pool_min=2)) == ["--autoscale=20,2"]
    assert pool_args(config.AgentSettings(throttle=20, autoscale=False)) == ["--concurrency=20"]

"""Policies: what a policy may set (checked on the engine by common.policy), how an agent's roles combine,
and where a policy stands among the agent's sources: over the file, under the environment and options."""

from __future__ import annotations

import json
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from click.testing import CliRunner

from agents import config
from agents import policy as agent_policy
from agents.cli import main
from agents.engine_api import EngineApiError
from common import policy
from common.errors import BadInput
from common.policy import AgentPolicy


@pytest.fixture
def agent_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file in tmp_path, a state folder there, and no agent settings in the environment."""
    for key in config.KEYS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "agent.toml"
    monkeypatch.setenv(config.CONFIG_ENV, str(path))
    monkeypatch.setenv(config.env_name("state_dir"), str(tmp_path / "state"))
    return path


def _types(annotation: Any) -> set[Any]:
    """The types an annotation allows, less None; an Annotated one as its base type."""
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return {get_args(a)[0] if get_origin(a) is Annotated else a for a in args} - {type(None)}


def test_every_policy_key_is_an_agent_setting_of_the_same_type_and_limits() -> None:
    for key, field in policy.PolicyValues.model_fields.items():
        agent_field = config.AgentSettings.model_fields[key]
        assert _types(field.annotation) == _types(agent_field.annotation), key
        assert [m for m in agent_field.metadata if m not in field.metadata] == [], key


def test_every_agent_setting_is_either_a_policy_key_or_refused_with_a_reason() -> None:
    assert set(policy.KEYS) | set(policy.REFUSED) == set(config.KEYS)
    assert not set(policy.KEYS) & set(policy.REFUSED)


def test_values_are_typed_from_their_text() -> None:
    values = policy.parse_pairs(["throttle=5", "task_events=false", "allowed_paths=/srv, /etc/nginx"])
    assert values == {"throttle": 5, "task_events": False, "allowed_paths": ["/srv", "/etc/nginx"]}


@pytest.mark.parametrize(
    ("pair", "said"),
    [
        ("throttel=5", "unknown policy setting 'throttel'; did you mean 'throttle'?"),
        ("throttle=0", "throttle=0: Input should be greater than or equal to 1"),
        ("throttle=many", "throttle=many: Input should be a valid integer"),
        ("execution_policy=open", "execution_policy=open"),
        ("loglevel=LOUD", "'LOUD' is not a log level"),
        ("allowed_paths=srv", "'srv' is not an absolute path"),
        ("throttle", "expected KEY=VALUE"),
    ],
)
def test_a_bad_key_or_value_is_bad_input_that_says_what(pair: str, said: str) -> None:
    with pytest.raises(BadInput) as raised:
        policy.parse_pairs([pair])
    assert said in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("key", sorted(policy.REFUSED))
def test_a_setting_of_each_host_is_refused_with_the_reason(key: str) -> None:
    with pytest.raises(BadInput) as raised:
        policy.validate({key: "x"})
    assert f"{key!r} cannot be set by a policy: {policy.REFUSED[key]}" in str(raised.value)
    assert f"converge-agent config set {key}=" in str(raised.value)


def test_null_is_refused_since_unset_removes_a_key() -> None:
    with pytest.raises(BadInput, match="converge policy unset"):
        policy.validate({"throttle": None})


def test_heartbeat_settings_that_break_the_ttl_rule_together_are_refused() -> None:
    policy.check_together({"throttle": 5})
    policy.check_together({"heartbeat_interval_s": 2, "heartbeat_ttl_s": 20})
    with pytest.raises(BadInput) as raised:
        policy.check_together({"heartbeat_interval_s": 2})
    assert "heartbeat_ttl_s (8) must be longer than" in str(raised.value)
    assert "(max_connection_failures, heartbeat_ttl_s at the default)" in str(raised.value)


def test_the_role_listed_first_wins_a_key_two_roles_set_differently() -> None:
    by_role: dict[str, dict[str, Any]] = {
        "web": {"throttle": 5, "loglevel": "DEBUG"},
        "db": {"throttle": 2, "task_events": False},
    }
    merged = policy.merge(by_role, ["db", "web", "cache"])
    assert merged.values == {"throttle": 2, "task_events": False, "loglevel": "DEBUG"}
    assert merged.roles == {"throttle": "db", "task_events": "db", "loglevel": "web"}
    assert merged.conflicts == [
        "throttle: role db sets 2, role web sets 5; db's applies (it is listed first)"
    ]
    assert policy.merge(by_role, ["web", "db"]).values["throttle"] == 5


def test_the_same_value_from_two_roles_is_no_conflict() -> None:
    by_role: dict[str, dict[str, Any]] = {"a": {"throttle": 5}, "b": {"throttle": 5}}
    merged = policy.merge(by_role, ["a", "b"])
    assert merged.conflicts == [] and merged.roles == {"throttle": "a"}


def test_a_policy_beats_the_file(agent_file: Path) -> None:
    agent_file.write_text("throttle = 20\nstep_timeout_s = 60\n")
    resolved = config.load(policy={"throttle": 5})
    assert resolved.settings.throttle == 5 and resolved.sources["throttle"] == "policy"
    assert resolved.settings.step_timeout_s == 60 and resolved.sources["step_timeout_s"] == "file"


def test_the_environment_and_options_beat_a_policy(agent_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_THROTTLE", "7")
    resolved = config.load({"step_timeout_s": 30.0}, policy={"throttle": 5, "step_timeout_s": 90})
    assert (resolved.settings.throttle, resolved.sources["throttle"]) == (7, "env")
    assert (resolved.settings.step_timeout_s, resolved.sources["step_timeout_s"]) == (30.0, "option")


def test_a_key_a_policy_may_not_set_is_dropped_by_the_agent(agent_file: Path) -> None:
    resolved = config.load(policy={"id": "stolen", "throttle": 5})
    assert resolved.settings.id != "stolen" and resolved.sources["id"] == "default"


def test_a_policy_the_agents_own_settings_make_invalid_is_not_applied(agent_file: Path) -> None:
    agent_file.write_text("heartbeat_ttl_s = 9\n")
    resolved = config.load(policy={"heartbeat_interval_s": 1.5, "throttle": 5})
    assert resolved.settings.heartbeat_interval_s == 1.0 and resolved.settings.throttle == 20
    assert resolved.sources["throttle"] == "default"
    assert resolved.policy_problem and "the policy is not applied" in resolved.policy_problem


def keep(agent_file: Path, kept: AgentPolicy) -> Path:
    path = agent_policy.policy_path(config.load().settings)
    agent_policy.save(path, kept)
    return path


def test_config_show_marks_the_kept_policy_over_the_file(agent_file: Path) -> None:
    agent_file.write_text('throttle = 20\nroles = ["web"]\n')
    keep(agent_file, AgentPolicy(values={"throttle": 5}, roles={"throttle": "web"}))

    result = CliRunner().invoke(main, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    settings: dict[str, Any] = json.loads(result.stdout)["settings"]
    assert settings["throttle"] == {"value": 5, "source": "policy"}
    assert settings["roles"] == {"value": ["web"], "source": "file"}


def test_a_policy_file_that_cannot_be_read_is_ignored(agent_file: Path) -> None:
    path = agent_policy.policy_path(config.load().settings)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert agent_policy.resolve().sources["throttle"] == "default"


def test_a_change_is_told_against_what_the_agent_runs_with() -> None:
    running: dict[str, tuple[Any, config.Source]] = {"throttle": (20, "file"), "loglevel": ("INFO", "env")}
    old = AgentPolicy(values={"task_events": False}, roles={"task_events": "db"})
    new = AgentPolicy(
        values={"throttle": 5, "loglevel": "DEBUG"}, roles={"throttle": "web", "loglevel": "web"}
    )
    assert agent_policy.describe(old, new, running) == [
        "policy for role web: loglevel=DEBUG (not applied: INFO from CONVERGE_AGENT_LOGLEVEL wins over a policy)",
        "policy for role db: task_events removed (was false)",
        "policy for role web: throttle=5 (was 20 from file)",
    ]


class FakeApi:
    """An engine that answers with `answers` in turn; an exception in it is raised instead."""

    def __init__(self, *answers: AgentPolicy | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[list[str]] = []

    def policy(self, roles: list[str]) -> AgentPolicy:
        self.asked.append(roles)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_follower_calls_back_only_when_the_policy_changes(caplog: pytest.LogCaptureFixture) -> None:
    five = AgentPolicy(values={"throttle": 5}, roles={"throttle": "web"})
    down = EngineApiError("cannot reach the engine", retryable=True)
    api = FakeApi(five, five, down, down, five, AgentPolicy())
    seen: list[AgentPolicy] = []
    follower = agent_policy.PolicyFollower(api, ["web"], 1.0, seen.append)

    changed = [follower.poll() for _ in range(6)]

    assert changed == [True, False, False, False, False, True]
    assert seen == [five, AgentPolicy()]
    assert api.asked == [["web"]] * 6
    assert [r.message for r in caplog.records].count(
        "cannot fetch this agent's policy, keeping the last one: cannot reach the engine"
    ) == 1


def test_the_follower_starts_from_the_kept_policy() -> None:
    five = AgentPolicy(values={"throttle": 5})
    seen: list[AgentPolicy] = []
    follower = agent_policy.PolicyFollower(FakeApi(five), ["web"], 1.0, seen.append, five)
    assert not follower.poll() and seen == []


def test_the_recorder_keeps_the_policy_for_config_show(agent_file: Path) -> None:
    resolved = config.load()
    recorder = agent_policy.Recorder(resolved.settings, resolved.sources)
    recorder(AgentPolicy(values={"throttle": 5}, roles={"throttle": "web"}))
    assert agent_policy.read(agent_policy.policy_path(resolved.settings)) == AgentPolicy(
        values={"throttle": 5}, roles={"throttle": "web"}
    )
    assert recorder.running["throttle"] == (5, "policy")
    recorder(AgentPolicy())
    assert recorder.running["throttle"] == (20, "default")

"""The engine's side of policies, on a real SQLite store: what is stored, what is refused (nothing stored),
and what each agent is given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.exceptions import HTTPException

from common.errors import BadInput
from common.store import SqlStore, open_store
from common.store.interface import EnrollmentRecord
from engine import auth
from engine import policy as engine_policy
from engine.cli import main


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def stored(store: SqlStore, role: str) -> dict[str, object]:
    return {r.key: r.value for r in store.policies(role)}


def test_set_keeps_typed_values_and_who_set_them(store: SqlStore) -> None:
    after = engine_policy.set_values(store, "web", {"throttle": "5", "task_events": False}, "admin")
    assert after == {"throttle": 5, "task_events": False} == stored(store, "web")
    assert {r.set_by for r in store.policies("web")} == {"admin"}


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"broker_url": "redis://elsewhere"}, "'broker_url' cannot be set by a policy"),
        ({"throttel": 5}, "did you mean 'throttle'?"),
        ({"throttle": 5, "step_timeout_s": -1}, "step_timeout_s=-1"),
        ({"heartbeat_interval_s": 3}, "heartbeat_ttl_s (8) must be longer"),
        ({}, "nothing to set"),
    ],
)
def test_a_bad_policy_is_refused_and_nothing_is_stored(
    store: SqlStore, values: dict[str, object], said: str
) -> None:
    engine_policy.set_values(store, "web", {"throttle": 3}, "admin")
    with pytest.raises(BadInput) as raised:
        engine_policy.set_values(store, "web", values, "admin")
    assert said in str(raised.value)
    assert stored(store, "web") == {"throttle": 3}


def test_the_heartbeat_rule_is_checked_with_the_rest_of_the_roles_policy(store: SqlStore) -> None:
    engine_policy.set_values(store, "web", {"heartbeat_ttl_s": 30}, "admin")
    engine_policy.set_values(store, "web", {"heartbeat_interval_s": 3}, "admin")  # 3 x 6 = 18 < 30
    with pytest.raises(BadInput, match="heartbeat_ttl_s"):
        engine_policy.unset(store, "web", ["heartbeat_ttl_s"], "admin")  # 18 > the default 8
    removed, left = engine_policy.unset(store, "web", [], "admin")
    assert removed == ["heartbeat_interval_s", "heartbeat_ttl_s"] and left == {}


def test_a_bad_role_name_is_bad_input(store: SqlStore) -> None:
    with pytest.raises(BadInput, match="invalid role"):
        engine_policy.set_values(store, "web/../x", {"throttle": 5}, "admin")


def test_an_agent_gets_its_roles_policies_the_first_role_winning(store: SqlStore) -> None:
    engine_policy.set_values(store, "web", {"throttle": 5, "loglevel": "DEBUG"}, "admin")
    engine_policy.set_values(store, "db", {"throttle": 2}, "admin")
    engine_policy.set_values(store, "cache", {"task_events": False}, "admin")

    given = engine_policy.for_agent(store, "host-web-db", ["web", "db"])

    assert given.values == {"throttle": 5, "loglevel": "DEBUG"}
    assert given.roles == {"throttle": "web", "loglevel": "web"}
    assert len(given.conflicts) == 1 and "web's applies" in given.conflicts[0]


def test_an_enrolled_agent_gets_no_policy_of_a_role_it_was_not_admitted_for(store: SqlStore) -> None:
    record = EnrollmentRecord("web-1", ["web"], "key", {}, "admitted", 1.0, 1.0, 1.0)
    store.enroll(record)
    assert engine_policy.for_agent(store, "web-1", ["web"]).values == {}
    with pytest.raises(HTTPException) as raised:
        engine_policy.for_agent(store, "web-1", ["web", "db"])
    assert raised.value.status_code == 403


def test_changing_a_policy_needs_an_admin_and_reading_it_a_viewer() -> None:
    assert auth.required_role("PUT", "/v1/policies/web") is auth.Role.ADMIN
    assert auth.required_role("DELETE", "/v1/policies/web") is auth.Role.ADMIN
    assert auth.required_role("GET", "/v1/policies") is auth.Role.VIEWER
    assert auth.required_role("GET", "/v1/agent/policy") is auth.Role.AGENT


@pytest.mark.parametrize(
    "args",
    [
        ["set", "--role", "web", "broker_url=redis://elsewhere"],
        ["set", "--role", "web", "throttle=0"],
        ["set", "--role", "a b", "throttle=5"],
        ["set", "throttle=5"],
        ["unset", "--role", "web", "throttel"],
    ],
)
def test_the_cli_refuses_bad_input_with_exit_2_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("CONVERGE_URL", "http://127.0.0.1:9")  # nothing listens: a request would exit 3
    monkeypatch.setenv("CONVERGE_INSECURE_HTTP", "1")
    result = CliRunner().invoke(main, ["policy", *args])
    assert result.exit_code == 2, result.output


class FakeClient:
    """The engine's answers to the policy commands, without an engine."""

    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}

    def set_policy(self, role: str, values: dict[str, Any]) -> dict[str, Any]:
        self.sent = values
        return values

    def policies(self, role: str | None = None) -> list[dict[str, Any]]:
        record = {"role": "web", "key": "allowed_paths", "value": ["/srv", "/etc"], "set_by": "admin"}
        return [record | {"set_at": "2026-12-07T10:00:00+00:00"}]

    def unset_policy(self, role: str, keys: list[str]) -> tuple[list[str], dict[str, Any]]:
        return [], {}


def test_the_cli_sends_typed_values_and_shows_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient()
    monkeypatch.setattr("engine.cli_policy.client_for", lambda url: fake)
    runner = CliRunner()

    done = runner.invoke(main, ["policy", "set", "--role", "web", "throttle=5", "task_events=off"])
    shown = runner.invoke(main, ["policy", "show"])
    unset = runner.invoke(main, ["policy", "unset", "--role", "web", "throttle"])

    assert done.exit_code == 0, done.output
    assert fake.sent == {"throttle": 5, "task_events": False}
    assert "web: throttle=5" in done.output and "within one heartbeat interval" in done.output
    assert shown.exit_code == 0 and "allowed_paths" in shown.output and "/srv,/etc" in shown.output
    assert unset.exit_code == 0 and "nothing to unset" in unset.output

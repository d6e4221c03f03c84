"""The rules of agent ids: the default, who holds an id, and what a refused agent says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agents import config
from agents.identity import MAX_ID, Holder, default_id, holder_of, new_token, process_is_gone, refusal
from common import names
from common.models import AgentInfo


def test_the_default_id_is_the_host_name_and_the_sorted_roles() -> None:
    assert default_id("web-01", ["web", "db", "web"]) == "web-01-db-web"


def test_agents_of_different_roles_on_one_host_get_different_default_ids() -> None:
    assert default_id("h1", ["web"]) != default_id("h1", ["db"])


def test_the_order_of_the_roles_does_not_change_the_default_id() -> None:
    assert default_id("h1", ["b", "a"]) == default_id("h1", ["a", "b"])


def test_without_roles_the_default_id_is_the_host_name() -> None:
    assert default_id("build.example.org", []) == "build.example.org"


def test_characters_outside_the_queue_name_alphabet_become_dashes() -> None:
    agent_id = default_id("_my host!", ["web"])
    assert agent_id == "my-host-web" and names.valid_name(agent_id)


def test_a_long_default_id_is_cut_to_a_valid_name_ending_with_a_hash_of_the_whole() -> None:
    roles = [f"role-number-{i}" for i in range(10)]
    first, second = default_id("h" * 40, roles), default_id("h" * 40, [*roles, "extra"])
    assert len(first) == MAX_ID and names.valid_name(first) and names.valid_name(second)
    assert first != second and first[:40] == second[:40]


def test_the_agent_settings_default_their_id_from_the_host_and_the_roles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("agents.config.socket.gethostname", lambda: "h1")
    monkeypatch.delenv("CONVERGE_AGENT_ID", raising=False)
    assert config.AgentSettings(roles=["web", "db"]).id == "h1-db-web"
    assert config.AgentSettings(roles=["web"], id="mine").id == "mine"


def test_a_token_names_its_host_and_pid_and_differs_on_every_run() -> None:
    token = new_token("h1", 42)
    assert holder_of(token, None) == Holder("h1", 42)
    assert token != new_token("h1", 42)


def test_a_token_of_another_form_is_explained_by_the_announcement() -> None:
    announced = AgentInfo.model_validate(
        {
            "id": "a1",
            "roles": ["web"],
            "host": "h2",
            "pid": 7,
            "version": "0",
            "throttle": 1,
            "heartbeat_ttl_s": 8.0,
            "started_at": "2024-01-01T00:00:00Z",
            "last_seen": "2024-01-01T00:00:00Z",
        }
    )
    assert holder_of("1234", announced) == Holder("h2", 7, 8.0)
    assert holder_of("1234", None).pid is None


def test_the_refusal_names_the_host_the_pid_what_to_do_and_the_ttl() -> None:
    message = refusal("a1", Holder("h1", 42), 6.4, 8.0)
    assert "host h1" in message and "pid 42" in message and "--id" in message
    assert "in 6s at most" in message and "TTL, 8s" in message


def test_this_process_is_not_gone_and_a_reaped_child_is() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert not process_is_gone(os.getpid())
    assert process_is_gone(int(child.stdout))


def test_a_zombie_child_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
        assert process_is_gone(child.pid)
    finally:
        child.wait()

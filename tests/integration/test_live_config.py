"""A running agent takes up `converge-agent config set` without a restart (real agents, real Redis)."""

from __future__ import annotations

import json
from pathlib import Path

from common import names
from tests.integration.burst import burst, children_of, most_at_once, started, submit, wait_succeeded
from tests.integration.conftest import Cluster, wait_for


def listed(cluster: Cluster, agent_id: str) -> dict:
    agents = json.loads(cluster.cli("agents", "list", "--json").stdout)
    return next(a for a in agents if a["id"] == agent_id)


def agent_log(cluster: Cluster, agent_id: str) -> str:
    return (cluster.logs / f"agent-{agent_id}.log").read_text(errors="replace")


def settings_from_the_file_only(cluster: Cluster, tmp_path: Path) -> Path:
    for key in ("THROTTLE", "ROLES", "POOL_MIN", "AUTOSCALE"):
        cluster.env.pop(f"CONVERGE_AGENT_{key}", None)
    path = tmp_path / "conf" / "agent.toml"
    cluster.env["CONVERGE_AGENT_CONFIG"] = str(path)
    return path


def test_config_set_throttle_changes_how_many_steps_a_running_agent_runs_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    cluster.start_agent("web", agent_id="web-live")  # throttle 20, the default
    assert listed(cluster, "web-live")["throttle"] == 20

    assert cluster.agent_cli("config", "set", "throttle=5").returncode == 0
    wait_for(lambda: listed(cluster, "web-live")["throttle"] == 5, 60, "the agent to announce throttle 5")

    root = tmp_path / "burst"
    workflow = submit(cluster, cluster.write("burst.yaml", burst(root, "live-burst", 10, hold_s=1)))
    wait_succeeded(cluster, workflow)
    assert most_at_once(root) == 5
    assert len(children_of(cluster.procs["agent-web-live"].pid)) <= 5
    assert "configuration: throttle 20 -> 5" in agent_log(cluster, "web-live")


def test_a_setting_only_a_restart_takes_up_is_logged_as_such(cluster: Cluster, tmp_path: Path) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    cluster.start_agent("web", agent_id="web-restart")
    assert cluster.agent_cli("config", "set", "visibility_timeout_s=7200").returncode == 0
    wait_for(
        lambda: "needs a restart: visibility_timeout_s" in agent_log(cluster, "web-restart"),
        20,
        "the agent to say visibility_timeout_s needs a restart",
    )


def test_an_invalid_value_is_refused_with_exit_2_and_the_file_left_byte_identical(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = settings_from_the_file_only(cluster, tmp_path)
    assert cluster.agent_cli("config", "set", "throttle=5").returncode == 0
    cluster.start_agent("web", agent_id="web-refuse")
    before = path.read_bytes()

    for pair in ("throttle=0", "pool_min=6", "throttle=many"):
        refused = cluster.agent_cli("config", "set", pair)
        assert refused.returncode == 2, (pair, refused.stdout, refused.stderr)
        assert path.read_bytes() == before

    assert (
        "pool_min (6) must be at most throttle (5)" in cluster.agent_cli("config", "set", "pool_min=6").stderr
    )
    assert listed(cluster, "web-refuse")["throttle"] == 5


def test_an_invalid_file_written_by_hand_is_logged_and_the_agent_keeps_its_settings(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = settings_from_the_file_only(cluster, tmp_path)
    assert cluster.agent_cli("config", "set", "throttle=5").returncode == 0
    cluster.start_agent("web", agent_id="web-hand")
    path.write_text("throttle = 0\n")
    wait_for(
        lambda: "the agent keeps running with the settings it had" in agent_log(cluster, "web-hand"),
        20,
        "the agent to refuse the file",
    )
    assert listed(cluster, "web-hand")["throttle"] == 5


def test_a_role_added_is_led_and_a_role_removed_is_given_up_without_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    assert cluster.agent_cli("config", "set", "roles=web").returncode == 0
    cluster.start_agent(agent_id="roles-live")  # its roles from the file
    wait_for(lambda: listed(cluster, "roles-live")["leader_of"] == ["web"], 60, "it to lead web")

    assert cluster.agent_cli("config", "set", "roles=web,db").returncode == 0
    wait_for(lambda: sorted(listed(cluster, "roles-live")["leader_of"]) == ["db", "web"], 60, "it to lead db")
    root = tmp_path / "db-step"
    workflow = wait_succeeded(
        cluster, submit(cluster, cluster.write("db.yaml", burst(root, "db", 1, role="db")))
    )
    assert workflow["steps"][0]["agent"] == "roles-live"

    assert cluster.agent_cli("config", "set", "roles=db").returncode == 0
    wait_for(lambda: listed(cluster, "roles-live")["leader_of"] == ["db"], 60, "it to give web up")
    assert cluster.redis.get(names.leader_key("web")) is None
    assert listed(cluster, "roles-live")["roles"] == ["db"]


def test_a_throttle_lowered_while_every_process_is_busy_holds_then_raised_again_takes_more(
    cluster: Cluster, tmp_path: Path
) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    cluster.start_agent("web", agent_id="web-busy")
    agent = cluster.procs["agent-web-busy"].pid
    busy, gate = tmp_path / "busy", tmp_path / "go"
    first = submit(cluster, cluster.write("busy.yaml", burst(busy, "busy", 20, gate=gate)))
    wait_for(lambda: started(busy) == 20, 120, "20 steps running at once (the pool growing from 1)")

    assert cluster.agent_cli("config", "set", "throttle=5").returncode == 0
    wait_for(lambda: listed(cluster, "web-busy")["throttle"] == 5, 60, "the agent to announce throttle 5")
    gate.touch()
    wait_succeeded(cluster, first)
    wait_for(lambda: len(children_of(agent)) <= 5, 30, "the pool down to the new throttle")

    few = tmp_path / "few"
    wait_succeeded(cluster, submit(cluster, cluster.write("few.yaml", burst(few, "few", 10, hold_s=1))))
    assert most_at_once(few) == 5

    assert cluster.agent_cli("config", "set", "throttle=12").returncode == 0
    wait_for(lambda: listed(cluster, "web-busy")["throttle"] == 12, 60, "the agent to announce throttle 12")
    more, gate = tmp_path / "more", tmp_path / "go-more"
    third = submit(cluster, cluster.write("more.yaml", burst(more, "more", 14, gate=gate)))
    wait_for(lambda: started(more) == 12, 120, "12 steps running at once")
    gate.touch()
    wait_succeeded(cluster, third)
    assert most_at_once(more) == 12


def test_a_removed_role_is_given_up_only_once_its_running_step_has_ended(
    cluster: Cluster, tmp_path: Path
) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    assert cluster.agent_cli("config", "set", "roles=web,db").returncode == 0
    cluster.start_agent(agent_id="roles-busy")
    wait_for(
        lambda: sorted(listed(cluster, "roles-busy")["leader_of"]) == ["db", "web"], 20, "it to lead both"
    )
    root, gate = tmp_path / "web-step", tmp_path / "go"
    workflow = submit(cluster, cluster.write("web.yaml", burst(root, "web-hold", 1, gate=gate)))
    wait_for(lambda: started(root) == 1, 30, "the web step to run")

    assert cluster.agent_cli("config", "set", "roles=db").returncode == 0
    wait_for(lambda: listed(cluster, "roles-busy")["roles"] == ["db"], 60, "it to announce its new roles")
    assert cluster.redis.get(names.leader_key("web")) is not None  # held while its step runs
    gate.touch()

    wait_succeeded(cluster, workflow)  # reported under the epoch it started with
    wait_for(lambda: cluster.redis.get(names.leader_key("web")) is None, 60, "the web lease given up")


def test_a_fixed_pool_grows_and_shrinks_to_a_new_throttle(cluster: Cluster, tmp_path: Path) -> None:
    settings_from_the_file_only(cluster, tmp_path)
    assert cluster.agent_cli("config", "set", "autoscale=false", "throttle=6").returncode == 0
    cluster.start_agent("web", agent_id="web-fixed-live")
    agent = cluster.procs["agent-web-fixed-live"].pid
    wait_for(lambda: len(children_of(agent)) == 6, 30, "6 pool processes")

    assert cluster.agent_cli("config", "set", "throttle=3").returncode == 0
    wait_for(lambda: len(children_of(agent)) == 3, 30, "3 pool processes")
    root = tmp_path / "burst"
    wait_succeeded(
        cluster, submit(cluster, cluster.write("burst.yaml", burst(root, "fixed-live", 6, hold_s=1)))
    )
    assert most_at_once(root) == 3

    assert cluster.agent_cli("config", "set", "throttle=8").returncode == 0
    wait_for(lambda: len(children_of(agent)) == 8, 30, "8 pool processes")

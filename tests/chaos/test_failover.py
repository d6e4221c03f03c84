"""One leader per role: a backup takes over a killed leader's role, and a paused leader comes back a backup.

Each step appends to a log when it starts and when it ends; the agents' own logs say when each one started
consuming the role's queue.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import names
from tests.chaos.test_agent_loss import lines, succeeded, workflow
from tests.integration.conftest import Cluster, desired_state, wait_for

INTERVAL_S = 1.0
TTL_S = 8.0
ROLE_QUEUE = names.role_queue("work")


def fast_heartbeats(cluster: Cluster) -> None:
    cluster.env.update(
        CONVERGE_AGENT_HEARTBEAT_INTERVAL_S=str(INTERVAL_S), CONVERGE_AGENT_HEARTBEAT_TTL_S=str(TTL_S)
    )


def agents(cluster: Cluster) -> dict[str, dict[str, Any]]:
    result = cluster.cli("agents", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {a["id"]: a for a in json.loads(result.stdout)}


def leader(cluster: Cluster) -> str:
    return str(
        wait_for(
            lambda: next((i for i, a in agents(cluster).items() if a["leader_of"]), None), 30, "a leader"
        )
    )


def consuming_since(cluster: Cluster, agent_id: str) -> list[float]:
    """When the agent started consuming the role's queue, from its log (Celery's own line)."""
    found = []
    for line in (cluster.logs / f"agent-{agent_id}.log").read_text().splitlines():
        if f"Started consuming from {ROLE_QUEUE}" in line:
            stamp = line[1 : line.index(": ")]  # "[2026-11-28 18:45:07,206: INFO/MainProcess] ..."
            found.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return found


def apply_logged(cluster: Cluster, tmp_path: Path, seconds: float) -> str:
    log, done = tmp_path / "runs.log", tmp_path / "done"
    run = (
        f'echo "start $(date +%s.%N)" >> {log}; sleep {seconds}; echo "end $(date +%s.%N)" >> {log}; '
        f"touch {done}"
    )
    resource = f"  - {{kind: command, name: slow, role: work, spec: {{run: '{run}', creates: {done}}}}}\n"
    result = cluster.cli(
        "apply", str(cluster.write("failover.yaml", desired_state("failover", resource))), "--json"
    )
    assert result.returncode == 0, result.stderr
    workflow_id: str = json.loads(result.stdout)["workflow"]["id"]
    wait_for(lambda: lines(tmp_path, "start"), 30, "the step to start")
    return workflow_id


def test_only_one_of_three_agents_leads_the_role_and_the_others_are_backups(cluster: Cluster) -> None:
    fast_heartbeats(cluster)
    for agent_id in ("a1", "a2", "a3"):
        cluster.start_agent("work", agent_id=agent_id)
    first = leader(cluster)

    seen = agents(cluster)
    assert [a["state"] for a in seen.values()].count("active") == 1
    assert {i for i, a in seen.items() if a["state"] == "backup"} == {"a1", "a2", "a3"} - {first}
    assert seen[first]["leader_of"] == ["work"] and seen[first]["epochs"] == {"work": 1}
    assert [len(consuming_since(cluster, i)) for i in ("a1", "a2", "a3")].count(1) == 1


def test_a_backup_takes_over_a_killed_leaders_role_within_the_ttl_and_runs_its_step_once_as_attempt_2(
    cluster: Cluster, tmp_path: Path
) -> None:
    fast_heartbeats(cluster)
    for agent_id in ("a1", "a2", "a3"):
        cluster.start_agent("work", agent_id=agent_id)
    first = leader(cluster)
    workflow_id = apply_logged(cluster, tmp_path, seconds=3)

    killed_at = time.time()
    cluster.stop(f"agent-{first}", signal.SIGKILL)
    done = succeeded(cluster, workflow_id)

    step = done["steps"][0]
    new = step["agent"]
    assert step["attempt"] == 2 and new != first
    assert len(lines(tmp_path, "start")) == 2 and len(lines(tmp_path, "end")) == 1, (
        "the step ran to its end once"
    )
    took_over_s = min(t for t in consuming_since(cluster, new) if t > killed_at) - killed_at
    seen = agents(cluster)
    assert seen[new]["leader_of"] == ["work"] and seen[new]["epochs"]["work"] == 2
    assert seen[first]["state"] == "unavailable"
    print(f"leader SIGKILL to a backup consuming the role's queue: {took_over_s:.2f}s (TTL {TTL_S:g}s)")
    assert took_over_s <= TTL_S + 1.0


def test_a_leader_paused_past_its_ttl_comes_back_as_a_backup_and_its_late_result_is_stale(
    cluster: Cluster, tmp_path: Path
) -> None:
    fast_heartbeats(cluster)
    for agent_id in ("a1", "a2"):
        cluster.start_agent("work", agent_id=agent_id)
    first = leader(cluster)
    workflow_id = apply_logged(cluster, tmp_path, seconds=2)
    agent = cluster.procs[f"agent-{first}"]

    os.killpg(agent.pid, signal.SIGSTOP)  # the step's command runs on, in its own session, and ends
    try:
        done = succeeded(cluster, workflow_id)  # attempt 2, on the new leader, finds the step done
    finally:
        os.killpg(agent.pid, signal.SIGCONT)
    other = {"a1": "a2", "a2": "a1"}[first]
    step = done["steps"][0]
    assert (step["attempt"], step["agent"], step["changed"]) == (2, other, False)

    wait_for(
        lambda: agents(cluster)[first]["state"] == "backup", 30, "the paused agent to come back a backup"
    )
    engine_log = cluster.logs / "engine.log"
    wait_for(lambda: "stale" in engine_log.read_text(), 30, "the paused leader's late report to be stale")
    after = workflow(cluster, workflow_id)["steps"][0]
    assert (after["attempt"], after["agent"], after["changed"]) == (2, other, False), (
        "the late report changed nothing"
    )
    assert len(lines(tmp_path, "start")) == len(lines(tmp_path, "end")) == 1, "the step ran once"
    wait_for(lambda: agents(cluster)[other]["leader_of"] == ["work"], 5, "the new leader to keep its role")
    assert agents(cluster)[first]["leader_of"] == []

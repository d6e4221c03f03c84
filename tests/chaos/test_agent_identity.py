"""Agent ids with real processes: a second agent with a live id is refused, `agents forget` drops a gone
agent, and an apply for a role that no agent serves warns, then runs once an agent of that role starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import Cluster, desired_state, wait_for


def agents(cluster: Cluster) -> dict[str, dict[str, Any]]:
    result = cluster.cli("agents", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {a["id"]: a for a in json.loads(result.stdout)}


def test_a_second_agent_started_with_a_live_id_is_refused_naming_the_host_and_pid_of_the_first(
    cluster: Cluster,
) -> None:
    cluster.start_agent("web", agent_id="a1")
    wait_for(lambda: agents(cluster)["a1"]["pid"] == cluster.procs["agent-a1"].pid, 30, "a1's own record")
    first = agents(cluster)["a1"]

    second = subprocess.run(
        [sys.executable, "-m", "agents", "run", "--id", "a1", "--role", "web"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert second.returncode == 1, second.stderr
    assert f"host {first['host']} (pid {first['pid']})" in second.stderr
    assert "Traceback" not in second.stderr and "heartbeat TTL" in second.stderr
    assert agents(cluster)["a1"]["pid"] == first["pid"], "the refused agent did not touch the record"


def test_forget_is_refused_for_a_live_agent_and_drops_a_gone_one(cluster: Cluster) -> None:
    cluster.start_agent("web", agent_id="a1")

    refused = cluster.cli("agents", "forget", "a1")
    assert refused.returncode == 1 and "agent a1 is alive" in refused.stderr, refused.stderr

    cluster.stop("agent-a1", signal.SIGTERM)  # signs off: its alive key goes at once
    wait_for(lambda: agents(cluster)["a1"]["state"] == "unavailable", 30, "a1 to be unavailable")
    forgotten = cluster.cli("agents", "forget", "a1")
    assert forgotten.returncode == 0, forgotten.stderr
    assert "a1" not in agents(cluster)

    unknown = cluster.cli("agents", "forget", "a1")
    assert unknown.returncode == 2 and "no agent a1" in unknown.stderr


def test_an_apply_for_a_role_without_agents_warns_and_its_steps_run_once_an_agent_of_that_role_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    target = tmp_path / "late.txt"
    source = desired_state(
        "late", f"  - {{kind: file, name: late, role: late, spec: {{path: {target}, content: hi}}}}\n"
    )
    path = cluster.write("late.yaml", source)

    applied = cluster.cli("apply", str(path), "--json")

    assert applied.returncode == 0, applied.stderr
    assert "warning: no live agent has role late" in applied.stderr
    document = json.loads(applied.stdout)
    assert len(document["warnings"]) == 1 and "role late" in document["warnings"][0]
    workflow_id = document["workflow"]["id"]
    shown = json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)
    assert shown["steps"][0]["state"] == "queued"
    assert shown["steps"][0]["message"] == "waiting for an agent of role late"

    cluster.start_agent("late", agent_id="late-1")
    waited = cluster.cli("workflows", "show", workflow_id, "--json")
    wait_for(
        lambda: (
            json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)["state"] == "succeeded"
        ),
        60,
        "the workflow to succeed",
    )
    assert waited.returncode == 0 and target.read_text() == "hi"
    again = cluster.cli("apply", str(path), "--json")
    assert json.loads(again.stdout)["warnings"] == [] and "warning" not in again.stderr

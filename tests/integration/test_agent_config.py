"""A real agent reads the configuration file that `converge-agent config set` wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state


def _listed(cluster: Cluster, agent_id: str) -> dict:
    """The agent as `converge agents list --json` shows it."""
    agents = json.loads(cluster.cli("agents", "list", "--json").stdout)
    return next(a for a in agents if a["id"] == agent_id)


def test_agent_runs_with_the_throttle_and_timeout_set_in_its_file(cluster: Cluster, tmp_path: Path) -> None:
    cluster.env.pop("CONVERGE_AGENT_THROTTLE", None)
    cluster.env.pop("CONVERGE_AGENT_STEP_TIMEOUT_S", None)
    cluster.env["CONVERGE_AGENT_CONFIG"] = str(tmp_path / "conf" / "agent.toml")
    written = cluster.agent_cli("config", "set", "throttle=3", "step_timeout_s=120")
    assert written.returncode == 0, written.stderr

    cluster.start_agent("web", agent_id="web-conf")

    listed = _listed(cluster, "web-conf")
    assert listed["throttle"] == 3
    assert listed["step_timeout_s"] == 120.0


def test_the_throttle_option_overrides_the_file(cluster: Cluster, tmp_path: Path) -> None:
    cluster.env.pop("CONVERGE_AGENT_THROTTLE", None)
    cluster.env["CONVERGE_AGENT_CONFIG"] = str(tmp_path / "agent.toml")
    assert cluster.agent_cli("config", "set", "throttle=3").returncode == 0

    cluster.start_agent("web", agent_id="web-option", throttle=5)

    assert _listed(cluster, "web-option")["throttle"] == 5


def test_steps_and_their_commands_run_step_nice_levels_below_the_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.env["CONVERGE_AGENT_STEP_NICE"] = "7"
    cluster.start_agent("web", agent_id="web-nice")
    out = tmp_path / "nice"
    desired = cluster.write(
        "nice.yaml",
        desired_state(
            "nice",
            f"""
  - kind: command
    name: nice
    role: web
    spec: {{run: "ps -o ni= -p $$ > {out}", creates: {out}}}
""",
        ),
    )

    result = cluster.apply(desired)

    assert result["exit_code"] == 0, result
    agent_nice = os.getpriority(os.PRIO_PROCESS, cluster.procs["agent-web-nice"].pid)
    assert int(out.read_text()) == agent_nice + 7

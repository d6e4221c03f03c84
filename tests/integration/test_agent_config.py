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


def test_the_agent_raises_its_own_priority_and_steps_run_at_the_one_it_started_with(
    cluster: Cluster, tmp_path: Path
) -> None:
    """As root (CI), the main process takes priority_boost (10) levels; the steps' commands get the
    priority the agent started with, here step_nice (3) below it."""
    cluster.env["CONVERGE_AGENT_STEP_NICE"] = "3"
    started_with = os.getpriority(os.PRIO_PROCESS, 0)  # the agent inherits the test's
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
    assert int(out.read_text()) == started_with + 3
    if os.geteuid() == 0:
        main = cluster.procs["agent-web-nice"].pid
        assert os.getpriority(os.PRIO_PROCESS, main) == max(-20, started_with - 10)

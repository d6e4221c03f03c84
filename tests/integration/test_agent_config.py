"""A real agent reads the configuration file that `converge-agent config set` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Cluster


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

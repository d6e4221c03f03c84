"""Routing (a role's steps run only on that role's agents) and the throttle (at most N steps at once)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state, wait_for


def _file_resources(role: str, root: Path, count: int) -> str:
    return "".join(
        f"""
  - kind: command
    name: {role}-{i}
    role: {role}
    spec: {{run: "echo $PPID > {root}/{role}-{i}", creates: {root}/{role}-{i}}}
"""
        for i in range(count)
    )


def _workflow(cluster: Cluster, workflow_id: str) -> dict:
    return json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)


def test_role_a_steps_never_run_on_role_b_agent(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("beta", agent_id="beta-1")
    desired = cluster.write(
        "routing.yaml",
        desired_state(
            "routing", _file_resources("alpha", tmp_path, 4) + _file_resources("beta", tmp_path, 4)
        ),
    )
    submitted = json.loads(cluster.cli("apply", str(desired), "--json").stdout)["workflow"]

    def beta_done() -> dict | None:
        wf = _workflow(cluster, submitted["id"])
        beta = [s for s in wf["steps"] if s["role"] == "beta"]
        return wf if all(s["state"] == "succeeded" for s in beta) else None

    workflow = wait_for(beta_done, 60, "the beta steps")
    # beta's agent is idle and alpha's steps are waiting in alpha's queue, untouched
    assert [s["state"] for s in workflow["steps"] if s["role"] == "alpha"] == ["queued"] * 4
    assert not any((tmp_path / f"alpha-{i}").exists() for i in range(4))

    cluster.start_agent("alpha", agent_id="alpha-1")
    done = wait_for(
        lambda: (wf := _workflow(cluster, submitted["id"]))["state"] == "succeeded" and wf, 60, "the workflow"
    )

    assert {s["agent"] for s in done["steps"] if s["role"] == "alpha"} == {"alpha-1"}
    assert {s["agent"] for s in done["steps"] if s["role"] == "beta"} == {"beta-1"}


def test_a_scoped_step_runs_only_on_the_agent_it_names(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", agent_id="web-1")
    cluster.start_agent("web", agent_id="web-2")
    resources = "".join(
        f"""
  - kind: file
    name: pinned-{i}
    role: web
    scope: web-2
    spec: {{path: {tmp_path}/pinned-{i}, content: "x"}}
"""
        for i in range(6)
    )
    desired = cluster.write("scoped.yaml", desired_state("scoped", resources))

    result = cluster.apply(desired)

    assert result["exit_code"] == 0, result
    assert {s["agent"] for s in result["workflow"]["steps"]} == {"web-2"}


def test_an_agent_with_throttle_3_never_runs_more_than_3_steps_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("slow", agent_id="slow-1", throttle=3)
    resources = "".join(
        f"""
  - kind: command
    name: slow-{i}
    role: slow
    spec: {{run: "sleep 1 && touch {tmp_path}/done-{i}", creates: {tmp_path}/done-{i}}}
"""
        for i in range(10)
    )
    desired = cluster.write("slow.yaml", desired_state("slow", resources))

    result = cluster.apply(desired)

    assert result["exit_code"] == 0, result
    spans = [
        (datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
        for s in result["workflow"]["steps"]
    ]
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak == 3, f"at most 3 at once, and the throttle is used: peak was {peak}"

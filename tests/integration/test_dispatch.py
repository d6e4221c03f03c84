"""What the engine publishes: role steps stamped with the role's epoch, which the agent's reports carry,
and nothing at all to the queue of an agent that is not alive (its steps wait in the engine until it is)."""

from __future__ import annotations

import json
from pathlib import Path

from common import names
from tests.integration.conftest import Cluster, desired_state, wait_for


def test_a_role_step_runs_under_the_epoch_of_the_roles_leader(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write(
        "epoch.yaml",
        desired_state(
            "epoch",
            f"  - {{kind: command, name: c, role: web, spec: {{run: 'echo $CONVERGE_EPOCH > {tmp_path}/e', "
            f"creates: {tmp_path}/e}}}}\n",
        ),
    )

    result = cluster.apply(desired)

    assert result["exit_code"] == 0, result
    (step,) = result["workflow"]["steps"]
    epoch = int(cluster.redis.get(names.epoch_key("web")) or 0)
    assert epoch >= 1 and step["epoch"] == epoch
    assert (tmp_path / "e").read_text() == f"{epoch}\n", "the step's context exposes the epoch"
    agents = json.loads(cluster.cli("agents", "list", "--json").stdout)
    assert [a["epochs"] for a in agents] == [{"web": epoch}]


def test_steps_pinned_to_an_agent_that_is_not_alive_are_held_by_the_engine_until_it_is_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    cluster.start_agent("web", agent_id="web-2")
    cluster.stop("agent-web-2")  # SIGTERM: it signs off at once, and is unavailable
    wait_for(lambda: cluster.agent_state("web-2") == "unavailable", 30, "web-2 to be unavailable")
    resources = "".join(
        f"  - {{kind: file, name: p{i}, role: web, scope: web-2, spec: {{path: {tmp_path}/p{i}, content: x}}}}\n"
        for i in range(3)
    )
    desired = cluster.write("held.yaml", desired_state("held", resources))

    applied = cluster.cli("apply", str(desired), "--json")

    assert applied.returncode == 0, applied.stderr
    submitted = json.loads(applied.stdout)
    assert any("agent web-2" in w and "held by the engine" in w for w in submitted["warnings"])
    workflow_id = submitted["workflow"]["id"]
    # apply publishes a workflow's first steps before it answers: these were held instead, and say why
    steps = cluster.show(workflow_id)["steps"]
    assert {s["state"] for s in steps} == {"queued"}
    assert all("waiting for agent web-2, which is not alive" in s["message"] for s in steps)
    assert cluster.redis.llen(names.agent_queue("web-2")) == 0

    cluster.start_agent("web", agent_id="web-2")

    done = wait_for(
        lambda: (wf := cluster.show(workflow_id))["state"] == "succeeded" and wf, 60, "the workflow"
    )
    assert {s["agent"] for s in done["steps"]} == {"web-2"}
    assert all((tmp_path / f"p{i}").read_text() == "x" for i in range(3))

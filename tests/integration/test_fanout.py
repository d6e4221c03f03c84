"""`scope: each`: one step per live agent of the role, each run by that agent on its own queue.

The agents share this machine's filesystem, so each step appends the id of the agent running it (the
command's $CONVERGE_AGENT_ID) to one log: what ran where is read from what the steps did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.conftest import Cluster, desired_state

AGENTS = ["web-1", "web-2", "web-3"]


def stamped(log: Path) -> str:
    """Per agent: `stamp` appends the agent's id, then `mark` appends `mark <id>`; each runs once."""
    resources = ""
    for name, text, after in (
        ("stamp", "$CONVERGE_AGENT_ID", ""),
        ("mark", "mark $CONVERGE_AGENT_ID", "stamp"),
    ):
        depends = f"depends_on: [command/{after}], " if after else ""
        run, unless = f'echo "{text}" >> {log}', f'grep -qx "{text}" {log}'
        resources += (
            f"  - {{kind: command, name: {name}, role: web, scope: each, {depends}"
            f"spec: {{run: '{run}', unless: '{unless}'}}}}\n"
        )
    return desired_state("fleet", resources)


def steps_by_resource(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["resource"]: step for step in document["steps"]}


def test_each_resource_runs_once_on_every_agent_of_its_role_with_a_step_per_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    for agent_id in AGENTS:
        cluster.start_agent("web", agent_id=agent_id)
    log = tmp_path / "stamps.log"
    path = cluster.write("fleet.yaml", stamped(log))

    planned = cluster.cli("plan", str(path), "--json")
    applied = cluster.apply(path)

    assert planned.returncode == 0, planned.stderr
    observed = {(c["resource"], c["agent"], c["action"]) for c in json.loads(planned.stdout)["changes"]}
    assert observed == {(f"command/{n}@{a}", a, "create") for n in ("stamp", "mark") for a in AGENTS}
    assert applied["exit_code"] == 0, applied
    shown = cluster.cli("workflows", "show", applied["workflow"]["id"], "--json")
    steps = steps_by_resource(json.loads(shown.stdout))
    assert sorted(steps) == sorted(f"command/{n}@{a}" for n in ("stamp", "mark") for a in AGENTS)
    for resource, step in steps.items():
        assert (step["state"], step["agent"], step["changed"]) == ("succeeded", resource.split("@")[1], True)
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(AGENTS + [f"mark {a}" for a in AGENTS])
    assert all(lines.index(a) < lines.index(f"mark {a}") for a in AGENTS)  # per agent, in order


def test_an_agent_that_joins_later_is_brought_up_to_date_by_the_next_apply(
    cluster: Cluster, tmp_path: Path
) -> None:
    for agent_id in AGENTS[:2]:
        cluster.start_agent("web", agent_id=agent_id)
    log = tmp_path / "stamps.log"
    path = cluster.write("fleet.yaml", stamped(log))
    assert cluster.apply(path)["exit_code"] == 0
    cluster.start_agent("web", agent_id="web-3")

    again = cluster.apply(path)

    assert again["exit_code"] == 0, again
    changed = {resource: step["changed"] for resource, step in steps_by_resource(again["workflow"]).items()}
    assert changed == {f"command/{n}@{a}": a == "web-3" for n in ("stamp", "mark") for a in AGENTS}
    assert sorted(log.read_text().splitlines()) == sorted(AGENTS + [f"mark {a}" for a in AGENTS])


def test_an_each_resource_whose_role_has_no_live_agent_makes_no_step_and_apply_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = cluster.write("fleet.yaml", stamped(tmp_path / "stamps.log"))

    result = cluster.cli("apply", str(path), "--json")
    planned = cluster.cli("plan", str(path), "--json")

    assert planned.returncode == 1, planned.stderr
    errors = {c["resource"]: c["error"] for c in json.loads(planned.stdout)["changes"]}
    assert list(errors) == ["command/stamp", "command/mark"]
    assert "found no live agent of role 'web'" in errors["command/mark"]
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["workflow"]["steps"] == []
    assert [w.split(":")[0] for w in document["warnings"]] == ["command/stamp", "command/mark"]
    assert "found no live agent of role 'web'" in document["warnings"][0]

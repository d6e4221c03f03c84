"""A desired state converged end to end: real engine, real agents, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.conftest import Cluster


def estate(root: Path, greeting: str = "hello\n") -> str:
    return f"""
apiVersion: converge/v1
kind: DesiredState
metadata: {{name: web-estate}}
resources:
  - kind: directory
    name: www
    role: web
    spec: {{path: {root}/www, mode: "0755"}}
  - kind: file
    name: index
    role: web
    depends_on: [directory/www]
    spec: {{path: {root}/www/index.html, content: {json.dumps(greeting)}, mode: "0644"}}
  - kind: file
    name: robots
    role: web
    depends_on: [directory/www]
    spec: {{path: {root}/www/robots.txt, content: "User-agent: *\\n", mode: "0644"}}
  - kind: command
    name: stamp
    role: db
    depends_on: [file/index]
    spec: {{run: "date > {root}/stamp", creates: {root}/stamp}}
  - kind: wait_for
    name: pause
    role: db
    spec: {{seconds: 1}}
"""


def steps_by_resource(workflow: dict) -> dict[str, dict]:
    return {step["resource"]: step for step in workflow["steps"]}


def test_apply_converges_then_reapply_changes_nothing_and_touches_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    cluster.start_agent("db", agent_id="db-1")
    root = tmp_path / "estate"
    desired = cluster.write("estate.yaml", estate(root))

    first = cluster.apply(desired)

    assert first["exit_code"] == 0
    workflow = first["workflow"]
    assert workflow["state"] == "succeeded"
    steps = steps_by_resource(workflow)
    assert {r: s["state"] for r, s in steps.items()} == dict.fromkeys(steps, "succeeded")
    assert steps["file/index"]["changed"] is True
    assert steps["wait_for/pause"]["changed"] is False
    assert steps["file/index"]["agent"] == "web-1"
    assert steps["command/stamp"]["agent"] == "db-1"
    assert (root / "www" / "index.html").read_text() == "hello\n"
    assert (root / "stamp").exists()
    # dependencies were respected: a dependent never started before what it depends on finished
    assert steps["file/index"]["started_at"] >= steps["directory/www"]["finished_at"]
    assert steps["command/stamp"]["started_at"] >= steps["file/index"]["finished_at"]
    nothing = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "cancelled": 0, "unfinished": 0}
    assert first["recap"] == {
        "db": nothing | {"ok": 1, "changed": 1},
        "web": nothing | {"changed": 3},
        "total": nothing | {"ok": 1, "changed": 4},
    }

    mtimes = {p: p.stat().st_mtime_ns for p in [root / "www" / "index.html", root / "stamp"]}
    second = cluster.apply(desired)

    assert second["exit_code"] == 0
    assert second["workflow"]["id"] != workflow["id"]
    assert [s["changed"] for s in second["workflow"]["steps"]] == [False] * 5
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert second["recap"]["total"] == nothing | {"ok": 5}

    shown = cluster.cli("apply", str(desired), "--wait", "--timeout", "90")
    assert shown.returncode == 0, shown.stderr
    recap = shown.stdout[shown.stdout.index("recap:") :].split()
    assert recap == [
        *["recap:", "db", "ok=2", "changed=0", "failed=0", "skipped=0"],
        *["web", "ok=3", "changed=0", "failed=0", "skipped=0"],
        *["total", "ok=5", "changed=0", "failed=0", "skipped=0"],
    ]


def test_a_hand_edit_is_the_only_change_the_next_apply_makes(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", "db", agent_id="both-1")
    root = tmp_path / "estate"
    desired = cluster.write("estate.yaml", estate(root))
    assert cluster.apply(desired)["exit_code"] == 0
    (root / "www" / "robots.txt").write_text("tampered\n")

    again = cluster.apply(desired)

    changed = [s["resource"] for s in again["workflow"]["steps"] if s["changed"]]
    assert changed == ["file/robots"]
    assert (root / "www" / "robots.txt").read_text() == "User-agent: *\n"


def test_plan_lists_creates_then_nothing_then_exactly_the_hand_edit(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", "db", agent_id="both-1")
    root = tmp_path / "estate"
    desired = cluster.write("estate.yaml", estate(root))

    fresh = cluster.cli("plan", str(desired), "--json")

    assert fresh.returncode == 0, fresh.stderr
    actions = {c["resource"]: c["action"] for c in json.loads(fresh.stdout)["changes"]}
    assert actions == {
        "directory/www": "create",
        "file/index": "create",
        "file/robots": "create",
        "command/stamp": "create",
        "wait_for/pause": "none",  # a wait changes nothing on the host
    }
    assert not root.exists(), "plan must change nothing"
    pending = cluster.cli("plan", str(desired), "--detailed-exitcode")
    assert pending.returncode == 4, pending.stderr  # changes pending, as Terraform's -detailed-exitcode
    assert pending.stdout.rstrip().endswith("3 to create, 1 to run, 0 to change, 1 unchanged"), pending.stdout

    assert cluster.apply(desired)["exit_code"] == 0
    converged = json.loads(cluster.cli("plan", str(desired), "--json").stdout)["changes"]
    assert {c["action"] for c in converged} == {"none"}
    up_to_date = cluster.cli("plan", str(desired), "--detailed-exitcode", "--json")
    assert up_to_date.returncode == 0, up_to_date.stderr

    (root / "www" / "index.html").write_text("edited by hand\n")
    summary = cluster.cli("plan", str(desired)).stdout.rstrip().splitlines()[-1]
    assert summary == "0 to create, 1 to change, 4 unchanged"
    edited = json.loads(cluster.cli("plan", str(desired), "--json").stdout)["changes"]
    updates = [c for c in edited if c["action"] != "none"]
    assert [(c["resource"], c["action"]) for c in updates] == [("file/index", "update")]
    assert "-edited by hand" in updates[0]["diff"] and "+hello" in updates[0]["diff"]
    assert (root / "www" / "index.html").read_text() == "edited by hand\n"


def test_a_failed_step_fails_the_workflow_and_its_dependents_never_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write(
        "failing.yaml",
        f"""
apiVersion: converge/v1
kind: DesiredState
metadata: {{name: failing}}
resources:
  - kind: command
    name: broken
    role: web
    retry: {{attempts: 1}}
    spec: {{run: "echo boom >&2; exit 7", creates: {tmp_path}/never}}
  - kind: file
    name: after
    role: web
    depends_on: [command/broken]
    spec: {{path: {tmp_path}/after, content: "x"}}
  - kind: file
    name: independent
    role: web
    spec: {{path: {tmp_path}/independent, content: "x"}}
""",
    )

    result = cluster.apply(desired)

    assert result["exit_code"] == 1
    steps = steps_by_resource(result["workflow"])
    assert result["workflow"]["state"] == "failed"
    assert steps["command/broken"]["state"] == "failed"
    assert "7" in steps["command/broken"]["error"] and "boom" in steps["command/broken"]["error"]
    assert steps["file/after"]["state"] == "skipped"
    assert steps["file/after"]["message"] == "skipped: command/broken failed"
    assert result["recap"]["total"]["skipped"] == 1
    assert steps["file/independent"]["state"] == "succeeded"
    assert not (tmp_path / "after").exists()


def test_workflows_list_show_history_and_agents_list_speak_json(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", "db", agent_id="both-1")
    desired = cluster.write("estate.yaml", estate(tmp_path / "estate"))
    workflow = cluster.apply(desired)["workflow"]

    history = json.loads(cluster.cli("workflows", "history", "--json").stdout)
    active = json.loads(cluster.cli("workflows", "list", "--json").stdout)
    shown = json.loads(cluster.cli("workflows", "show", workflow["id"], "--json").stdout)
    agents = json.loads(cluster.cli("agents", "list", "--json").stdout)

    assert [w["id"] for w in history] == [workflow["id"]]
    assert "steps" not in history[0]
    assert active == []
    assert set(shown) >= {"id", "state", "created_at", "finished_at", "steps"}
    assert set(shown["steps"][0]) >= {
        "id", "resource", "role", "state", "attempt", "changed", "agent", "progress",
        "message", "error", "started_at", "finished_at",
    }  # fmt: skip
    assert shown["created_at"].endswith("Z") or "+00:00" in shown["created_at"]
    assert agents[0]["id"] == "both-1" and agents[0]["state"] == "active"
    assert set(agents[0]) >= {"id", "roles", "state", "leader_of", "last_seen", "running"}
    assert sorted(agents[0]["roles"]) == ["db", "web"]


def test_an_unknown_workflow_is_a_clear_error(cluster: Cluster) -> None:
    result = cluster.cli("workflows", "show", "nope")
    assert result.returncode == 2
    assert "no workflow nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_engine_exits_3_and_says_where_it_looked(cluster: Cluster, tmp_path: Path) -> None:
    desired = cluster.write("estate.yaml", estate(tmp_path / "estate"))
    cluster.env["CONVERGE_URL"] = "http://127.0.0.1:9"

    for args in (["apply", str(desired)], ["workflows", "list"], ["agents", "list"], ["plan", str(desired)]):
        result = cluster.cli(*args)
        assert result.returncode == 3, (args, result.stderr)
        assert "http://127.0.0.1:9" in result.stderr
        assert "Traceback" not in result.stderr
    assert os.environ.get("CONVERGE_URL") != "http://127.0.0.1:9"

"""Continuous compliance with a real engine and agent: a managed file edited by hand is reported with its
diff (`report`), or put back (`enforce`), by a schedule shortened from hourly to seconds for the test."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import Cluster, desired_state, wait_for


def motd(tmp_path: Path, name: str) -> str:
    return desired_state(
        name,
        f"""  - kind: file
    name: motd
    role: web
    spec: {{path: {tmp_path}/motd, content: "welcome\\n"}}
""",
    )


def compliance(cluster: Cluster) -> dict[str, dict[str, Any]]:
    result = cluster.cli("compliance", "--json")
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)}


def test_report_mode_records_a_hand_edit_with_its_diff_and_leaves_the_file(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write("motd.yaml", motd(tmp_path, "motd-report"))
    assert cluster.apply(desired)["exit_code"] == 0
    target = tmp_path / "motd"
    assert target.read_text() == "welcome\n"

    made = cluster.cli("schedule", "set", str(desired), "--every", "2s", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["schedule"]["mode"] == "report"
    wait_for(lambda: compliance(cluster)["motd-report"]["state"] == "compliant", 30, "the first check")

    target.write_text("edited by hand\n")

    def drifted() -> dict[str, Any] | None:
        found = compliance(cluster)["motd-report"]
        return found if found["state"] == "drifted" else None

    found = wait_for(drifted, 30, "the drift to be reported")
    (entry,) = found["report"]
    assert entry["resource"] == "file/motd" and entry["agent"] == "web-1"
    assert "-edited by hand" in entry["diff"] and "+welcome" in entry["diff"]
    first_seen = entry["since"]
    # Later checks keep reporting it, from when it was first seen, and never touch the file.
    checked = found["checked_at"]

    def checked_again() -> dict[str, Any] | None:
        now = compliance(cluster)["motd-report"]
        return now if datetime.fromisoformat(now["checked_at"]) > datetime.fromisoformat(checked) else None

    later = wait_for(checked_again, 30, "another check")
    assert later["state"] == "drifted" and later["report"][0]["since"] == first_seen
    assert target.read_text() == "edited by hand\n"
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []

    human = cluster.cli("compliance")
    assert human.returncode == 0 and "drifted" in human.stdout and "edited by hand" in human.stdout

    metrics = httpx.get(cluster.env["CONVERGE_URL"] + "/metrics", headers=cluster.headers, timeout=10).text
    assert 'converge_drifted_resources{desired_state="motd-report",mode="report"} 1.0' in metrics

    assert cluster.cli("schedule", "remove", "motd-report").returncode == 0
    assert compliance(cluster) == {}
    gone = cluster.cli("schedule", "remove", "motd-report")
    assert gone.returncode == 2 and "no schedule named" in gone.stderr


def test_enforce_mode_puts_the_file_back_with_a_workflow(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write("motd.yaml", motd(tmp_path, "motd-enforce"))
    made = cluster.cli("schedule", "set", str(desired), "--every", "2s", "--mode", "enforce")
    assert made.returncode == 0, made.stderr
    target = tmp_path / "motd"
    # The first check finds the file missing, and the correction creates it.
    wait_for(lambda: target.exists() and target.read_text() == "welcome\n", 60, "the first correction")

    target.write_text("edited by hand\n")
    wait_for(lambda: target.read_text() == "welcome\n", 60, "the file to be put back")
    found = compliance(cluster)["motd-enforce"]
    assert found["workflow_id"]
    workflow = cluster.show(found["workflow_id"])
    wait_for(lambda: cluster.show(found["workflow_id"])["state"] == "succeeded", 30, "the correction to end")
    assert workflow["steps"][0]["resource"] == "file/motd"
    wait_for(lambda: compliance(cluster)["motd-enforce"]["state"] == "compliant", 30, "a compliant check")


def test_bad_schedules_are_refused_with_exit_code_2(cluster: Cluster, tmp_path: Path) -> None:
    desired = cluster.write("motd.yaml", motd(tmp_path, "motd-bad"))
    for args, says in [
        (["--every", "soon"], "not a duration"),
        (["--every", "0s"], "must be between"),
        (["--every", "1h", "--mode", "fix"], "Invalid value for '--mode'"),
    ]:
        result = cluster.cli("schedule", "set", str(desired), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert says in result.stderr
        assert "Traceback" not in result.stderr
    broken = cluster.write("broken.yaml", "apiVersion: converge/v1\nkind: DesiredState\n")
    assert cluster.cli("schedule", "set", str(broken), "--every", "1h").returncode == 2
    assert json.loads(cluster.cli("schedule", "list", "--json").stdout) == []

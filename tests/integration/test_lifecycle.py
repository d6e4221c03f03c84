"""Workflow lifecycle on real processes: timeouts, retries, cancel, history, idempotent submission."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

from tests.integration.conftest import Cluster, desired_state, processes_with, wait_for


def submit(cluster: Cluster, path: Path) -> str:
    result = cluster.cli("apply", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["workflow"]["id"])


def finished(cluster: Cluster, workflow_id: str, timeout_s: float = 60) -> dict:
    done = {"succeeded", "failed", "aborted", "cancelled"}
    return wait_for(
        lambda: (wf := cluster.show(workflow_id))["state"] in done and wf,
        timeout_s,
        f"workflow {workflow_id}",
    )


def new_marker() -> str:
    """A sleep duration no other process uses, so that /proc shows exactly the processes of one step."""
    return f"600.{random.randrange(10**8, 10**9)}"


def sleeper(name: str, marker: str, tmp_path: Path, role: str = "work", extra: str = "") -> str:
    # a shell with two sleeps, one in the background: cancel must end the whole tree, not just the shell
    return f"""
  - kind: command
    name: {name}
    role: {role}{extra}
    spec: {{run: "sleep {marker} & sleep {marker}; wait", creates: {tmp_path}/{name}-never}}
"""


def test_a_step_without_progress_for_its_timeout_is_ended_and_aborts_the_workflow(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    marker = new_marker()
    desired = cluster.write(
        "silent.yaml",
        desired_state(
            "silent",
            sleeper("silent", marker, tmp_path, extra="\n    timeout_s: 1.5")
            + f"""
  - kind: file
    name: later
    role: work
    depends_on: [command/silent]
    spec: {{path: {tmp_path}/later, content: "x"}}
""",
        ),
    )

    workflow = finished(cluster, submit(cluster, desired))

    assert workflow["state"] == "aborted"
    steps = {s["resource"]: s for s in workflow["steps"]}
    assert steps["command/silent"]["state"] == "timed_out"
    assert "no progress" in steps["command/silent"]["error"]
    assert steps["file/later"]["state"] == "skipped"
    assert steps["file/later"]["message"] == "skipped: command/silent timed out"
    assert wait_for(lambda: not processes_with(marker), 5, "the timed-out command to be gone")
    assert not (tmp_path / "later").exists()


def test_a_step_failing_twice_succeeds_on_its_third_attempt_after_backing_off(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    log = tmp_path / "attempts.log"
    run = f"date +%s.%N >> {log}; [ $(wc -l < {log}) -ge 3 ] && touch {tmp_path}/done || exit 1"
    desired = cluster.write(
        "flaky.yaml",
        desired_state(
            "flaky",
            f"""
  - kind: command
    name: flaky
    role: work
    retry: {{attempts: 3, backoff_s: 0.6}}
    spec: {{run: "{run}", creates: {tmp_path}/done}}
""",
        ),
    )

    result = cluster.apply(desired)

    assert result["exit_code"] == 0, result
    step = result["workflow"]["steps"][0]
    assert (step["state"], step["attempt"], step["changed"]) == ("succeeded", 3, True)
    times = [float(line) for line in log.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 3
    # backoff of 0.6s then 1.2s, each with jitter of 0.5x to 1.5x
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps


def test_a_non_retryable_error_fails_at_once(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("work", agent_id="work-1")
    desired = cluster.write(
        "orphan.yaml",
        desired_state(
            "orphan",
            f"""
  - kind: file
    name: orphan
    role: work
    retry: {{attempts: 5, backoff_s: 30}}
    spec: {{path: {tmp_path}/missing-dir/file, content: "x"}}
""",
        ),
    )

    result = cluster.apply(desired)

    assert result["exit_code"] == 1
    step = result["workflow"]["steps"][0]
    assert (step["state"], step["attempt"]) == ("failed", 1)
    assert "directory" in step["error"]


def test_a_manual_retry_reruns_only_what_is_not_yet_compliant(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("work", agent_id="work-1")
    gate = tmp_path / "permission-granted"
    desired = cluster.write(
        "manual.yaml",
        desired_state(
            "manual",
            f"""
  - kind: file
    name: first
    role: work
    spec: {{path: {tmp_path}/first, content: "1"}}
  - kind: command
    name: needs-permission
    role: work
    retry: {{attempts: 1}}
    spec: {{run: "test -e {gate} && touch {tmp_path}/granted", creates: {tmp_path}/granted}}
  - kind: file
    name: after
    role: work
    depends_on: [command/needs-permission]
    spec: {{path: {tmp_path}/after, content: "2"}}
""",
        ),
    )
    failed = cluster.apply(desired)
    assert failed["exit_code"] == 1 and failed["workflow"]["state"] == "failed"
    first_mtime = (tmp_path / "first").stat().st_mtime_ns
    gate.touch()  # the operator fixes what was wrong

    retried = cluster.cli(
        "workflows", "retry", failed["workflow"]["id"], "--wait", "--json", "--timeout", "60"
    )

    assert retried.returncode == 0, retried.stderr
    steps = {s["resource"]: s for s in json.loads(retried.stdout)["workflow"]["steps"]}
    assert (steps["file/first"]["attempt"], steps["file/first"]["changed"]) == (1, True)
    assert (steps["command/needs-permission"]["attempt"], steps["command/needs-permission"]["state"]) == (
        2,
        "succeeded",
    )
    assert steps["file/after"]["state"] == "succeeded"
    assert (tmp_path / "first").stat().st_mtime_ns == first_mtime
    refused = cluster.cli("workflows", "retry", failed["workflow"]["id"])
    assert refused.returncode == 1 and "only failed, aborted or cancelled" in refused.stderr


def test_cancel_stops_a_running_sleep_and_its_child_within_5s_and_queued_steps_never_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1", throttle=1)
    marker = new_marker()
    queued = "".join(
        f"""
  - kind: file
    name: queued-{i}
    role: work
    spec: {{path: {tmp_path}/queued-{i}, content: "x"}}
"""
        for i in range(3)
    )
    desired = cluster.write(
        "cancel.yaml", desired_state("cancel", sleeper("sleeper", marker, tmp_path) + queued)
    )
    workflow_id = submit(cluster, desired)
    wait_for(lambda: len(processes_with(marker)) >= 3, 30, "the shell and its two sleeps")

    started = time.monotonic()
    result = cluster.cli("workflows", "cancel", workflow_id, "--wait", "--json", "--timeout", "30")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workflow"]["state"] == "cancelled"
    assert not processes_with(marker)
    assert elapsed < 5, f"cancel took {elapsed:.2f}s"
    workflow = cluster.show(workflow_id)
    assert [s["state"] for s in workflow["steps"]] == ["cancelled"] * 4
    assert all(s["started_at"] is None for s in workflow["steps"][1:])
    # the queued deliveries reach the now idle agent and are dropped, not run
    wait_for(lambda: cluster.redis.llen("converge.role.work") == 0, 10, "the queue to drain")
    assert not any((tmp_path / f"queued-{i}").exists() for i in range(3))
    again = cluster.cli("workflows", "cancel", workflow_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_cancel_works_while_the_agent_is_busy_with_20_steps(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("work", agent_id="work-1")  # throttle 20
    busy_marker, target_marker = new_marker(), new_marker()
    busy = "".join(sleeper(f"busy-{i}", busy_marker, tmp_path) for i in range(19))
    busy_id = submit(cluster, cluster.write("busy.yaml", desired_state("busy", busy)))
    target_id = submit(
        cluster, cluster.write("target.yaml", desired_state("target", sleeper("t", target_marker, tmp_path)))
    )
    wait_for(
        lambda: len(processes_with(busy_marker)) >= 19 * 3 and processes_with(target_marker),
        60,
        "20 running steps",
    )

    started = time.monotonic()
    result = cluster.cli("workflows", "cancel", target_id, "--wait", "--timeout", "30")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert elapsed < 5 and not processes_with(target_marker)
    assert len(processes_with(busy_marker)) == 19 * 3, "the other steps keep running"
    assert cluster.cli("workflows", "cancel", busy_id, "--wait", "--timeout", "30").returncode == 0
    assert not processes_with(busy_marker)


def test_a_succeeded_workflow_moves_to_history_and_pruning_removes_old_history(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    desired = cluster.write(
        "one.yaml",
        desired_state(
            "one", f"  - {{kind: file, name: f, role: work, spec: {{path: {tmp_path}/f, content: x}}}}\n"
        ),
    )
    workflow = cluster.apply(desired)["workflow"]

    assert [w["id"] for w in json.loads(cluster.cli("workflows", "history", "--json").stdout)] == [
        workflow["id"]
    ]
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []
    kept = cluster.cli("workflows", "prune")  # default retention: 30 days
    assert kept.returncode == 0 and "pruned 0" in kept.stdout
    pruned = cluster.cli("workflows", "prune", "--older-than-days", "0", "--yes")
    assert pruned.returncode == 0 and "pruned 1" in pruned.stdout
    assert json.loads(cluster.cli("workflows", "history", "--json").stdout) == []


def test_applying_the_same_desired_state_while_it_runs_returns_the_same_workflow(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    gate = tmp_path / "gate"  # the step runs until the test says: however slow the second submit is
    step = f"  - {{kind: wait_for, name: w, role: work, spec: {{path: {gate}, within_s: 120}}}}\n"
    desired = cluster.write("slow.yaml", desired_state("slow", step))

    first = submit(cluster, desired)
    second = submit(cluster, desired)

    assert first == second
    gate.touch()
    assert finished(cluster, first)["state"] == "succeeded"
    assert submit(cluster, desired) != first, "once finished, the same file starts a new workflow"


def test_progress_is_visible_while_a_step_runs(cluster: Cluster) -> None:
    cluster.start_agent("work", agent_id="work-1")
    desired = cluster.write(
        "wait.yaml", desired_state("wait", "  - {kind: wait_for, name: w, role: work, spec: {seconds: 10}}\n")
    )
    workflow_id = submit(cluster, desired)

    step = wait_for(  # the 10 s leave room for `workflows show` on a busy machine
        lambda: (s := cluster.show(workflow_id)["steps"][0])["progress"] and 0 < s["progress"] < 100 and s,
        60,
        "progress between 0 and 100",
    )

    assert step["state"] == "started" and "waited" in step["message"]
    assert finished(cluster, workflow_id)["steps"][0]["progress"] == 100

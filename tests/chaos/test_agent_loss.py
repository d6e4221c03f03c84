"""An agent or a pool process that dies does not strand its steps: they run again, as new attempts.

Each step appends to a log when it starts and when it ends, so "ran once" and "when" are measured from what
the steps did, not from what the store says.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import Cluster, desired_state, wait_for

# Short heartbeats, so that these tests take seconds: the engine holds an agent lost TTL_S after its last
# heartbeat, and an agent cut off from Redis ends its steps after 5 failed beats (5 to 6 s), before that.
INTERVAL_S = 1.0
TTL_S = 8.0


def fast_heartbeats(cluster: Cluster) -> None:
    cluster.env.update(
        CONVERGE_AGENT_HEARTBEAT_INTERVAL_S=str(INTERVAL_S), CONVERGE_AGENT_HEARTBEAT_TTL_S=str(TTL_S)
    )


def logged_step(tmp_path: Path, seconds: float = 3.0) -> str:
    """A command that logs its start (with its pool process's pid) and, if it gets there, its end."""
    log, done = tmp_path / "runs.log", tmp_path / "done"
    run = (
        f'echo "start $(date +%s.%N) $PPID" >> {log}; sleep {seconds}; '
        f'echo "end $(date +%s.%N)" >> {log}; touch {done}'
    )
    return desired_state(
        "loss", f"  - {{kind: command, name: slow, role: work, spec: {{run: '{run}', creates: {done}}}}}\n"
    )


def lines(tmp_path: Path, word: str) -> list[list[str]]:
    log = tmp_path / "runs.log"
    text = log.read_text() if log.exists() else ""
    return [line.split() for line in text.splitlines() if line.startswith(word)]


def workflow(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{cluster.env['CONVERGE_URL']}/v1/workflows/{workflow_id}", headers=cluster.headers, timeout=10
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def submit(cluster: Cluster, tmp_path: Path, seconds: float = 3.0) -> str:
    result = cluster.cli("apply", str(cluster.write("loss.yaml", logged_step(tmp_path, seconds))), "--json")
    assert result.returncode == 0, result.stderr
    workflow_id: str = json.loads(result.stdout)["workflow"]["id"]
    return workflow_id


def running_on(cluster: Cluster, workflow_id: str) -> str:
    """The agent running the step, once it has started."""
    step = wait_for(
        lambda: (s := workflow(cluster, workflow_id)["steps"][0])["state"] == "started" and s,
        30,
        "the step to start",
    )
    return str(step["agent"])


def succeeded(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    document: dict[str, Any] = wait_for(
        lambda: (wf := workflow(cluster, workflow_id))["state"] in ("succeeded", "failed") and wf,
        60,
        "the workflow to finish",
    )
    assert document["state"] == "succeeded", document
    return document


def test_the_step_of_a_killed_agent_runs_again_on_the_other_agent_of_its_role_within_the_ttl(
    cluster: Cluster, tmp_path: Path
) -> None:
    fast_heartbeats(cluster)
    cluster.start_agent("work", agent_id="a1")
    cluster.start_agent("work", agent_id="a2")
    workflow_id = submit(cluster, tmp_path)
    first = running_on(cluster, workflow_id)
    wait_for(lambda: lines(tmp_path, "start"), 30, "the step's command to start")

    killed_at = time.time()
    cluster.stop(f"agent-{first}", signal.SIGKILL)
    wait_for(lambda: len(lines(tmp_path, "start")) == 2, TTL_S + 10, "the second attempt to start")
    to_new_attempt_s = float(lines(tmp_path, "start")[1][1]) - killed_at
    done = succeeded(cluster, workflow_id)

    step = done["steps"][0]
    other = {"a1": "a2", "a2": "a1"}[first]
    assert (step["attempt"], step["agent"]) == (2, other)
    assert len(lines(tmp_path, "end")) == 1, "the killed attempt's command died with its agent"
    print(f"agent SIGKILL to the new attempt started: {to_new_attempt_s:.2f}s (TTL {TTL_S:g}s)")
    assert to_new_attempt_s <= TTL_S + 2.0


def test_without_another_agent_the_restarted_agent_takes_its_lost_step_as_a_new_attempt(
    cluster: Cluster, tmp_path: Path
) -> None:
    fast_heartbeats(cluster)
    cluster.start_agent("work", agent_id="a1")
    workflow_id = submit(cluster, tmp_path)
    running_on(cluster, workflow_id)
    wait_for(lambda: lines(tmp_path, "start"), 30, "the step's command to start")

    cluster.stop("agent-a1", signal.SIGKILL)
    cluster.start_agent("work", agent_id="a1")
    done = succeeded(cluster, workflow_id)

    step = done["steps"][0]
    assert (step["attempt"], step["agent"]) == (2, "a1")
    assert len(lines(tmp_path, "start")) == 2 and len(lines(tmp_path, "end")) == 1
    agent_log = (cluster.logs / "agent-a1.log").read_text()
    assert "worker lost: the agent restarted while it ran" in agent_log


def test_a_pool_process_killed_mid_step_fails_the_attempt_as_worker_lost_and_it_is_retried(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="a1")
    workflow_id = submit(cluster, tmp_path)
    running_on(cluster, workflow_id)
    started = wait_for(lambda: lines(tmp_path, "start"), 30, "the step's command to start")
    pool_pid = int(started[0][2])

    killed_at = time.monotonic()
    os.kill(pool_pid, signal.SIGKILL)
    retried = wait_for(
        lambda: (s := workflow(cluster, workflow_id)["steps"][0])["attempt"] == 2 and s,
        10,
        "the attempt to fail as worker lost",
    )
    lost_s = time.monotonic() - killed_at
    done = succeeded(cluster, workflow_id)

    assert "worker lost" in (retried["message"] or ""), retried
    assert f"pool process {pool_pid} died" in retried["message"]
    assert done["steps"][0]["attempt"] == 2
    assert len(lines(tmp_path, "start")) == 2 and len(lines(tmp_path, "end")) == 1
    print(f"pool process SIGKILL to the attempt failed as worker lost: {lost_s:.2f}s")
    assert lost_s <= 2.0

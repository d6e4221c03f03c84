"""The engine survives itself, and late or duplicate deliveries never run a step twice."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from celery import Celery

from common import names
from common.celery_app import make_app
from tests.integration.conftest import Cluster, desired_state, wait_for


def chain(tmp_path: Path, count: int) -> str:
    log = tmp_path / "runs.log"
    return "".join(
        f"""
  - kind: command
    name: step-{i}
    role: work
    {f"depends_on: [command/step-{i - 1}]" if i else ""}
    spec: {{run: "echo step-{i} >> {log}; sleep 0.4; touch {tmp_path}/done-{i}", creates: {tmp_path}/done-{i}}}
"""
        for i in range(count)
    )


def test_sigkill_of_the_engine_mid_workflow_then_a_restart_finishes_it_each_step_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    desired = cluster.write("chain.yaml", desired_state("chain", chain(tmp_path, 6)))
    workflow_id = json.loads(cluster.cli("apply", str(desired), "--json").stdout)["workflow"]["id"]
    log = tmp_path / "runs.log"
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 2, 30, "two steps to have run")

    cluster.stop("engine", signal.SIGKILL)
    # while the engine is down the agent finishes its step and reports into the stream
    wait_for(lambda: (tmp_path / "done-1").exists(), 30, "step 1 to finish while the engine is down")
    restarted = time.monotonic()
    cluster.start_engine()
    workflow = wait_for(
        lambda: (wf := cluster.show(workflow_id))["state"] == "succeeded" and wf,
        60,
        "the workflow to succeed",
    )
    resumed_s = time.monotonic() - restarted

    assert log.read_text().split() == [f"step-{i}" for i in range(6)], "each step ran exactly once"
    assert [s["attempt"] for s in workflow["steps"]] == [1] * 6
    assert all(s["changed"] for s in workflow["steps"])
    print(f"engine restart to workflow succeeded (4 steps of 0.4s left): {resumed_s:.2f}s")


def test_a_redelivered_or_stale_step_message_is_dropped_by_the_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    log = tmp_path / "runs.log"
    gate = tmp_path / "gate"
    resources = f"""
  - kind: command
    name: once
    role: work
    retry: {{attempts: 1}}
    spec: {{run: "echo run >> {log}; test -e {gate} && touch {tmp_path}/done", creates: {tmp_path}/done}}
"""
    desired = cluster.write("once.yaml", desired_state("once", resources))
    first = cluster.apply(desired)
    assert first["exit_code"] == 1
    gate.touch()
    workflow_id = first["workflow"]["id"]
    retried = cluster.cli("workflows", "retry", workflow_id, "--wait", "--json")
    assert retried.returncode == 0, retried.stderr
    assert log.read_text().split() == ["run", "run"]

    # what kombu does after the visibility timeout: deliver attempt 1 again, and attempt 2 as well
    app: Celery = make_app(cluster.env["CONVERGE_BROKER_URL"])
    step = cluster.show(workflow_id)["steps"][0]
    for attempt in (1, 2):
        message = {
            "workflow_id": workflow_id,
            "step_id": step["id"],
            "resource": step["resource"],
            "attempt": attempt,
            "kind": "command",
            "name": "once",
            "role": "work",
            "spec": {"run": f"echo run >> {log}", "creates": str(tmp_path / "never")},
        }
        queue = names.role_queue("work")
        signed = cluster.signed(message)  # as the engine sent it
        app.send_task(names.STEP_TASK, kwargs=signed, queue=queue, exchange="", routing_key=queue)
    wait_for(
        lambda: cluster.redis.llen(names.role_queue("work")) == 0, 20, "the agent to take both deliveries"
    )
    agent_log = cluster.logs / "agent-work-1.log"
    wait_for(lambda: agent_log.read_text().count("dropping step") >= 2, 20, "the agent to drop both")

    assert log.read_text().split() == ["run", "run"], "neither delivery ran"
    text = agent_log.read_text()
    assert "stale attempt" in text and "already claimed" in text
    after = cluster.show(workflow_id)
    assert (after["state"], after["steps"][0]["attempt"]) == ("succeeded", 2)

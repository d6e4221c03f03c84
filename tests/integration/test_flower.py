"""Flower, run as the README says, sees every step and which workflow, step and resource it is."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.localredis import free_port
from tests.integration.conftest import Cluster, desired_state, wait_for

AUTH = ("ops", "s3cret")


@pytest.fixture
def flower(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "common.flower_app",
        "flower",
        f"--port={port}",
    ]
    argv.append(f"--basic-auth={AUTH[0]}:{AUTH[1]}")
    with (cluster.logs / "flower.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/api/workers", auth=AUTH, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "Flower")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_flower_shows_each_step_with_its_workflow_step_and_resource(
    cluster: Cluster, flower: str, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write(
        "two.yaml",
        desired_state(
            "two",
            f"  - {{kind: directory, name: www, role: web, spec: {{path: {tmp_path}/www}}}}\n"
            f"  - {{kind: file, name: index, role: web, depends_on: [directory/www], "
            f"spec: {{path: {tmp_path}/www/index.html, content: hi}}}}\n",
        ),
    )
    workflow = cluster.apply(desired)["workflow"]

    def tasks() -> dict | None:
        found = httpx.get(flower + "/api/tasks", auth=AUTH, timeout=5).json()
        succeeded = {k: t for k, t in found.items() if t.get("state") == "SUCCESS"}
        return succeeded if len(succeeded) == 2 else None

    seen = wait_for(tasks, 30, "Flower to see both steps succeed")

    assert sorted(seen) == sorted(f"{s['id']}.1" for s in workflow["steps"])
    for step in workflow["steps"]:
        task = seen[f"{step['id']}.1"]
        assert task["name"] == "converge.step"
        assert workflow["id"] in task["kwargs"] and step["id"] in task["kwargs"]
        assert step["resource"] in task["kwargs"]
        assert task["worker"].startswith("web-1@")


def test_flower_shows_a_failed_step_as_failure_with_its_error_and_its_resource_in_args(
    cluster: Cluster, flower: str, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write(
        "failing.yaml",
        desired_state(
            "failing",
            "  - {kind: command, name: broken, role: web, retry: {attempts: 1}, "
            f'spec: {{run: "echo boom >&2; exit 7", creates: {tmp_path}/never}}}}\n',
        ),
    )
    workflow = cluster.apply(desired)["workflow"]
    task_id = f"{workflow['steps'][0]['id']}.1"

    def failed() -> dict | None:
        task = httpx.get(flower + "/api/tasks", auth=AUTH, timeout=5).json().get(task_id)
        return task if task and task.get("state") == "FAILURE" else None

    task = wait_for(failed, 30, "Flower to see the step fail")

    assert "exit" in task["exception"] and "StepFailed" in task["exception"]
    assert "command/broken" in task["args"] and workflow["id"][:8] in task["args"]


def test_flower_shows_failure_revoked_retry_and_success_with_the_resources(
    cluster: Cluster, flower: str, tmp_path: Path
) -> None:
    """One run with a failed, a retried, a cancelled and a succeeded step: Flower's API has each one's
    state and its resource in the args; the store still says what Converge decided."""
    cluster.start_agent("web", agent_id="web-1")
    desired = cluster.write(
        "mixed.yaml",
        desired_state(
            "mixed",
            f"  - {{kind: file, name: fine, role: web, spec: {{path: {tmp_path}/fine, content: x}}}}\n"
            "  - {kind: command, name: broken, role: web, retry: {attempts: 1}, "
            f'spec: {{run: "exit 7", creates: {tmp_path}/never}}}}\n'
            "  - {kind: command, name: flaky, role: web, retry: {attempts: 2, backoff_s: 0}, "
            f'spec: {{run: "exit 5", creates: {tmp_path}/never2}}}}\n'
            f"  - {{kind: wait_for, name: gate, role: web, spec: {{path: {tmp_path}/gate, within_s: 120}}}}\n",
        ),
    )
    applied = cluster.cli("apply", str(desired), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]

    def steps() -> dict[str, dict]:
        return {s["resource"]: s for s in cluster.show(workflow_id)["steps"]}

    def settled() -> dict[str, dict] | None:
        now = steps()
        done = now["command/flaky"]["state"] == "failed" and now["command/broken"]["state"] == "failed"
        return now if done and now["wait_for/gate"]["state"] == "started" else None

    before = wait_for(settled, 60, "the commands to fail and the gate to run")
    cancelled = cluster.cli("workflows", "cancel", workflow_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: cluster.show(workflow_id)["state"] == "cancelled", 60, "the workflow to be cancelled")

    ids = {resource: step["id"] for resource, step in before.items()}
    expected = {
        f"{ids['file/fine']}.1": ("SUCCESS", "file/fine"),
        f"{ids['command/broken']}.1": ("FAILURE", "command/broken"),
        f"{ids['command/flaky']}.1": ("RETRY", "command/flaky"),
        f"{ids['command/flaky']}.2": ("FAILURE", "command/flaky"),
        f"{ids['wait_for/gate']}.1": ("REVOKED", "wait_for/gate"),
    }

    def seen() -> dict | None:
        found = httpx.get(flower + "/api/tasks", auth=AUTH, timeout=5).json()
        states = {task_id: found.get(task_id, {}).get("state") for task_id in expected}
        return found if states == {k: v[0] for k, v in expected.items()} else None

    tasks = wait_for(seen, 30, f"Flower to show {expected}")
    for task_id, (_, resource) in expected.items():
        assert resource in tasks[task_id]["args"], tasks[task_id]
        assert workflow_id[:8] in tasks[task_id]["args"]
    # Each message was acknowledged, the revoked one too: none waits in kombu's unacked hash to come back.
    wait_for(lambda: cluster.redis.hlen("unacked") == 0, 30, "every step message to be acknowledged")
    final = steps()
    assert final["wait_for/gate"]["state"] == "cancelled"
    assert final["command/flaky"]["attempt"] == 2
    assert final["file/fine"]["state"] == "succeeded"

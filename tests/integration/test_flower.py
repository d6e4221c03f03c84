"""Flower, run as the README says, sees every step and which workflow, step and resource it is."""

from __future__ import annotations

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

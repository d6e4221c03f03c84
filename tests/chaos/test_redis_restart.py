"""Redis SIGKILLed and restarted (losing everything: no persistence) while an agent runs a chain of commands.

Each command appends its name to a log and sleeps, and `creates:` a marker, so it is idempotent: what ran,
and how often, is counted from the log, not taken from the store.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, desired_state, wait_for

STEPS = 5
ROUNDS = 5


def chain(tmp_path: Path, name: str) -> str:
    """`STEPS` commands, each depending on the one before, each logging its name once it starts."""
    log, resources = tmp_path / f"{name}.log", ""
    for i in range(STEPS):
        marker = tmp_path / f"{name}-{i}.done"
        after = f", depends_on: [command/s{i - 1}]" if i else ""
        run = f"echo s{i} >> {log}; sleep 0.5; touch {marker}"
        resources += f"  - {{kind: command, name: s{i}, role: work{after}, spec: {{run: '{run}', creates: {marker}}}}}\n"
    return desired_state(name, resources)


def runs(tmp_path: Path, name: str) -> Counter[str]:
    log = tmp_path / f"{name}.log"
    return Counter(log.read_text().split() if log.exists() else [])


def finished(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    """The workflow once it has finished; fails at once if the agent's process has ended."""
    assert cluster.procs["agent-work-1"].poll() is None, f"the agent exited: see {cluster.logs}"
    result = cluster.cli("workflows", "show", workflow_id, "--json")
    if result.returncode != 0:
        return None  # the engine may answer "Redis is unreachable" for a moment
    document: dict[str, Any] = json.loads(result.stdout)
    return document if document["state"] in ("succeeded", "failed", "aborted", "cancelled") else None


def kill_and_restart(redis_server: LocalRedis) -> None:
    assert redis_server.process is not None
    redis_server.process.kill()
    redis_server.process.wait()
    redis_server.start()


def restart_redis_during_a_chain(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path, round_: int
) -> None:
    name = f"chain-{round_}"
    applied = cluster.cli("apply", str(cluster.write(f"{name}.yaml", chain(tmp_path, name))), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    running = 1 + round_ % (STEPS - 1)  # the step running when Redis dies: s0 to s3
    wait_for(lambda: sum(runs(tmp_path, name).values()) >= running, 60, f"step s{running - 1} to start")

    kill_and_restart(redis_server)

    workflow = wait_for(lambda: finished(cluster, workflow_id), 120, f"round {round_} to finish")
    assert workflow["state"] == "succeeded", workflow
    assert runs(tmp_path, name) == {f"s{i}": 1 for i in range(STEPS)}, f"round {round_}"


def test_agent_survives_redis_restarts_during_running_commands_and_no_step_runs_twice(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    try:
        for round_ in range(ROUNDS):
            restart_redis_during_a_chain(cluster, redis_server, tmp_path, round_)
    finally:
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()  # the session's Redis: leave it running for the next tests
    log = (cluster.logs / "agent-work-1.log").read_text()
    assert "Unrecoverable error" not in log

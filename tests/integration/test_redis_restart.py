"""A Redis restart (losing everything: no persistence) neither stops the engine nor the agents for good."""

from __future__ import annotations

from pathlib import Path

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, desired_state, wait_for


def one_file(tmp_path: Path, name: str) -> str:
    return desired_state(
        name, f"  - {{kind: file, name: f, role: work, spec: {{path: {tmp_path}/{name}, content: x}}}}\n"
    )


def test_engine_and_agent_carry_on_after_redis_restarts(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    assert cluster.apply(cluster.write("before.yaml", one_file(tmp_path, "before")))["exit_code"] == 0

    redis_server.stop()
    redis_server.start()

    # the agent announces itself again, and its Celery consumer reconnects
    wait_for(lambda: cluster.agent_state("work-1") == "active", 60, "the agent to be back")
    after = cluster.apply(cluster.write("after.yaml", one_file(tmp_path, "after")))

    assert after["exit_code"] == 0, after
    assert (tmp_path / "after").read_text() == "x"

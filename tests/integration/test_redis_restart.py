"""A Redis restart (losing everything: no persistence) neither stops the engine nor the agents for good."""

from __future__ import annotations

import json
from pathlib import Path

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, desired_state, wait_for


def one_file(tmp_path: Path, name: str, role: str = "work") -> str:
    return desired_state(
        name, f"  - {{kind: file, name: f, role: {role}, spec: {{path: {tmp_path}/{name}, content: x}}}}\n"
    )


def test_engine_and_agent_carry_on_after_redis_restarts(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    assert cluster.apply(cluster.write("before.yaml", one_file(tmp_path, "before")))["exit_code"] == 0
    # a step waiting in its queue for an agent of role `later`: the restart loses that message
    waiting = cluster.cli(
        "apply", str(cluster.write("waiting.yaml", one_file(tmp_path, "waiting", "later"))), "--json"
    )
    assert waiting.returncode == 0, waiting.stderr
    waiting_id = json.loads(waiting.stdout)["workflow"]["id"]

    redis_server.stop()
    redis_server.start()

    # the agent announces itself again, and its Celery consumer reconnects
    wait_for(lambda: cluster.agent_state("work-1") == "active", 60, "the agent to be back")
    after = cluster.apply(cluster.write("after.yaml", one_file(tmp_path, "after")))

    assert after["exit_code"] == 0, after
    assert (tmp_path / "after").read_text() == "x"
    # the engine saw Redis lose its data and published the queued step again
    cluster.start_agent("later", agent_id="later-1")
    wait_for(
        lambda: (
            json.loads(cluster.cli("workflows", "show", waiting_id, "--json").stdout)["state"] == "succeeded"
        ),
        60,
        "the step that was queued during the restart",
    )
    assert (tmp_path / "waiting").read_text() == "x"

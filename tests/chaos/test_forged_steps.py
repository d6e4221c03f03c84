"""Steps nobody signed: someone who can write to Redis pushes work onto a role queue, and nothing runs.

Each message names a command that would create a file. The agent refuses a hand-made JSON step, one whose
signed fields were changed, and a pickled one; its refusals are logged and counted in Redis, the status
stream and the store stay as they were, and the agent then runs a real step as usual.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Producer  # type: ignore[attr-defined]

from common import names
from common.celery_app import make_app
from tests.integration.conftest import Cluster, desired_state, wait_for

QUEUE = names.role_queue("web")


def step(tmp_path: Path, name: str) -> dict[str, Any]:
    return {
        "workflow_id": "forged",
        "step_id": f"forged.{name}",
        "resource": f"command/{name}",
        "kind": "command",
        "name": name,
        "role": "web",
        "spec": {"run": f"touch {tmp_path}/{name}", "creates": str(tmp_path / name)},
    }


def test_unsigned_tampered_and_pickled_steps_are_refused_and_nothing_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-1")
    app = make_app(cluster.env["CONVERGE_BROKER_URL"])
    tampered = cluster.signed(step(tmp_path, "tampered"))
    tampered["spec"] = {"run": f"touch {tmp_path}/tampered", "creates": str(tmp_path / "tampered")}
    tampered["name"] = "tampered-after-signing"
    for kwargs in (step(tmp_path, "unsigned"), tampered):
        app.send_task(names.STEP_TASK, kwargs=kwargs, queue=QUEUE, exchange="", routing_key=QUEUE)
    with Connection(cluster.env["CONVERGE_BROKER_URL"]) as conn:
        body = [[], cluster.signed(step(tmp_path, "pickled")), {}]
        headers = {"task": names.STEP_TASK, "id": "forged.pickled.1"}
        Producer(conn).publish(
            body, exchange=Exchange(""), routing_key=QUEUE, serializer="pickle", headers=headers
        )

    log = cluster.logs / "agent-web-1.log"
    wait_for(lambda: cluster.redis.llen(QUEUE) == 0, 30, "the agent to take the three messages")
    refused = wait_for(
        lambda: (
            (counts := cluster.redis.hgetall(names.agent_refused_key("web-1")))
            and sum(map(int, counts.values())) == 2
            and counts
        ),
        30,
        "two refusals counted",
    )
    wait_for(lambda: "dropped a message" in log.read_text(), 30, "the pickle to be dropped")

    assert {k.decode(): int(v) for k, v in refused.items()} == {"unsigned": 1, "bad signature": 1}
    assert not any((tmp_path / name).exists() for name in ("unsigned", "tampered", "pickled"))
    assert cluster.redis.xlen(names.STATUS_STREAM) == 0, "no step claimed, nothing reported"
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []
    text = log.read_text()
    assert text.count("refused a step message") == 2, text
    assert "it is not signed" in text and "does not verify" in text

    applied = cluster.apply(
        cluster.write(
            "real.yaml",
            desired_state(
                "real",
                f"  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/real, content: x}}}}\n",
            ),
        )
    )
    assert applied["exit_code"] == 0, applied
    assert cluster.procs["agent-web-1"].poll() is None

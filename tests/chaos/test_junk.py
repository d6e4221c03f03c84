"""Junk on a role queue: the agent logs it once, counts it, drops it, and runs the next real step.

Anyone who can write to Redis can push to a role queue. Before the agent's transport guarded its decoding,
each of the first five messages here ended the agent's process with Celery's "Unrecoverable error"; kombu
reads the others, and the agent's Celery consumer drops what Celery cannot use.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from common import names
from tests.integration.conftest import Cluster, desired_state, wait_for

QUEUE = names.role_queue("web")


def envelope(body: str, content_type: str = "application/json", **headers: str) -> bytes:
    """A kombu message as the Redis transport stores it, with `body` as its (base64) body."""
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": headers,
            "properties": {
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
                "delivery_info": {"exchange": QUEUE, "routing_key": QUEUE},
                "delivery_mode": 2,
                "priority": 0,
            },
        }
    ).encode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


JUNK = {
    "not json": b"not json",
    "an empty list": b"[]",
    "null": b"null",
    "a body that is not base64": envelope("not base64!", task=names.STEP_TASK, id=str(uuid.uuid4())),
    "an envelope without properties": b'{"body": "", "headers": {}}',
    "a body that is not json": envelope(b64("not json"), task=names.STEP_TASK, id=str(uuid.uuid4())),
    "a pickle": envelope(
        b64("x"), "application/x-python-serialize", task=names.STEP_TASK, id=str(uuid.uuid4())
    ),
    "no task header": envelope(b64("[[], {}, {}]")),
    "a task that does not exist": envelope(b64("[[], {}, {}]"), task="no.such.task", id=str(uuid.uuid4())),
}


def one_file(tmp_path: Path) -> str:
    return desired_state(
        "after-junk",
        f"  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/after, content: x}}}}\n",
    )


@pytest.mark.parametrize("raw", JUNK.values(), ids=JUNK.keys())
def test_agent_drops_junk_on_its_queue_and_runs_the_next_real_step(
    cluster: Cluster, tmp_path: Path, raw: bytes
) -> None:
    cluster.start_agent("web", agent_id="web-1")

    cluster.redis.lpush(QUEUE, raw)
    wait_for(lambda: cluster.redis.llen(QUEUE) == 0, 30, "the agent to take the junk")
    applied = cluster.apply(cluster.write("after.yaml", one_file(tmp_path)))

    assert applied["exit_code"] == 0, applied
    assert (tmp_path / "after").read_text() == "x"
    assert cluster.procs["agent-web-1"].poll() is None, "the agent's process ended"
    unacked = names.unacked_keys("web-1")["unacked_key"]
    assert cluster.redis.hlen(unacked) == 0, "the junk waits to be delivered again"
    log = (cluster.logs / "agent-web-1.log").read_text()
    assert "Unrecoverable error" not in log
    dropped = [line for line in log.splitlines() if "dropped a message on queue converge.role.web" in line]
    assert len(dropped) == 1, log  # logged once,
    assert "; 1 dropped since the agent started" in dropped[0]  # counted,
    assert len(dropped[0]) < 600  # in one bounded line
    assert "Traceback" not in log

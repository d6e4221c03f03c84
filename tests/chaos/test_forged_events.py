"""Forged status events: while a step runs on its agent, others try to report it done, and nothing changes.

A trusted agent `web-1` runs a command of role web that appends to a log and waits for the test's gate.
Meanwhile, on the status stream: an unsigned `succeeded` naming web-1; one with a MAC of another key; from
the admitted agent `db-1`, with its own Redis user and its own key, a `succeeded` naming itself (it does not
hold the attempt) and one naming web-1; and a copy of web-1's own `started`. Each is refused and counted, or
recorded once, and the step stays as web-1 reported it. db-1 cannot read or write the keys trusted agents
sign with. Then the gate opens and the step ends as web-1 reports it, having run once.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from common import names, signing
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_admission import agent_entry, engine_http, start_enrolling

pytestmark = pytest.mark.chaos


def event(step: dict[str, Any], workflow_id: str, agent: str, state: str, seq: int) -> bytes:
    fields = {
        "workflow_id": workflow_id,
        "step_id": step["id"],
        "attempt": step["attempt"],
        "epoch": step.get("epoch") or 0,
        "seq": seq,
        "state": state,
        "agent": agent,
        "at": datetime.now(UTC).isoformat(),
        "changed": True,
    }
    return json.dumps(fields).encode()


def test_forged_unsigned_and_foreign_status_events_are_refused_and_the_store_does_not_change(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = tls_cluster
    start_enrolling(cluster, "db-1", "db")
    wait_for(lambda: agent_entry(cluster, "db-1").get("state") == "pending", 60, "db-1 to wait")
    assert cluster.cli("agents", "admit", "db-1").returncode == 0
    cluster.start_agent("web", agent_id="web-1")
    wait_for(lambda: agent_entry(cluster, "db-1").get("state") == "active", 60, "db-1 to run")
    kept = json.loads((cluster.workdir / "agent-state" / "db-1" / "admission.json").read_text())
    db = redis.Redis.from_url(kept["broker_url"])  # db-1's own Redis user
    db_key = base64.b64decode(kept["event_key"])
    runs, done, gate = tmp_path / "runs.log", tmp_path / "done", tmp_path / "gate"
    # the step holds until the test opens the gate (at most 120 s), so it is still running however slow
    # the machine is while the forged events are read
    run = (
        f"echo run >> {runs}; for i in $(seq 1200); do [ -e {gate} ] && break; sleep 0.1; done; touch {done}"
    )
    desired = cluster.write(
        "forged.yaml",
        desired_state(
            "forged",
            f"  - {{kind: command, name: slow, role: web, spec: {{run: '{run}', creates: {done}}}}}\n",
        ),
    )
    applied = cluster.cli("apply", str(desired), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    step = wait_for(
        lambda: next((s for s in cluster.show(workflow_id)["steps"] if s["state"] == "started"), None),
        30,
        "the step to start on web-1",
    )
    assert step["agent"] == "web-1"
    before = cluster.show(workflow_id)

    with pytest.raises(redis.exceptions.NoPermissionError):
        db.get(names.agent_event_key("web-1"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        db.set(names.agent_event_key("db-1"), base64.b64encode(db_key))
    unsigned = event(step, workflow_id, "web-1", "succeeded", 5)
    cluster.redis.xadd(names.STATUS_STREAM, {"e": unsigned})
    other_key = event(step, workflow_id, "web-1", "succeeded", 6)
    cluster.redis.xadd(names.STATUS_STREAM, {"e": other_key, "s": signing.mac(b"x" * 32, other_key)})
    as_itself = event(step, workflow_id, "db-1", "succeeded", 7)
    db.xadd(names.STATUS_STREAM, {"e": as_itself, "s": signing.mac(db_key, as_itself)})
    as_web = event(step, workflow_id, "web-1", "succeeded", 8)
    db.xadd(names.STATUS_STREAM, {"e": as_web, "s": signing.mac(db_key, as_web)})
    # web-1's own `started`, as it was on the stream: its key read where only the broker's admin reaches
    web_key = base64.b64decode(cluster.redis.get(names.agent_event_key("web-1")) or b"")
    again = event(step, workflow_id, "web-1", "started", 1)
    cluster.redis.xadd(names.STATUS_STREAM, {"e": again, "s": signing.mac(web_key, again)})

    counts = wait_for(
        lambda: (
            (found := cluster.redis.hgetall(names.EVENTS_REFUSED))
            and sum(map(int, found.values())) == 4
            and found
        ),
        30,
        "the engine to refuse four entries",
    )
    wait_for(lambda: cluster.redis.xlen(names.STATUS_STREAM) == 0, 30, "the stream to be read")

    assert counts == {b"unsigned": b"1", b"forged": b"2", b"not holder": b"1"}
    during = cluster.show(workflow_id)
    assert during == before, "a forged or repeated event changed the store"
    log = (cluster.logs / "engine.log").read_text()
    assert "its MAC does not verify against agent web-1's key" in log
    assert "it is not signed" in log and "neither holds the attempt" in log
    with engine_http(cluster) as http:
        health = http.get("/v1/health").json()
    assert health["ok"] and health["ingest"]["refused"] == {"unsigned": 1, "forged": 2, "not holder": 1}

    gate.touch()
    done = wait_for(
        lambda: (view := cluster.show(workflow_id))["state"] in ("succeeded", "failed") and view,
        60,
        "the step to end as web-1 reports it",
    )
    assert done["state"] == "succeeded"
    [final] = done["steps"]
    assert (final["agent"], final["attempt"]) == ("web-1", 1)
    assert runs.read_text().splitlines() == ["run"]

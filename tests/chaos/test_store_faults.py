"""A store that fails under the real engine: a write lock held by another process for longer than SQLite's
busy timeout, and a step whose row the store refuses (a poison event). Nothing is stranded: the events
are recorded once the store takes them, or wait in the dead-letter stream, without an engine restart."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import Cluster, desired_state, wait_for

LOCK_S = 35.0  # longer than the store's busy timeout (30 s)

# Another process takes SQLite's write lock, as a backup tool or an operator's `sqlite3` shell would.
HOLD_THE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def health(cluster: Cluster) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(cluster.env["CONVERGE_URL"] + "/v1/health", timeout=10).json()
    return document


def health_when(cluster: Cluster, *, ok: bool) -> dict[str, Any] | None:
    """The health document once `ok` is as asked, else None."""
    document = health(cluster)
    return document if document["ok"] is ok else None


def submit(cluster: Cluster, name: str, resources: str) -> str:
    result = cluster.cli(
        "apply", str(cluster.write(f"{name}.yaml", desired_state(name, resources))), "--json"
    )
    assert result.returncode == 0, result.stderr
    workflow_id: str = json.loads(result.stdout)["workflow"]["id"]
    return workflow_id


def steps(cluster: Cluster, workflow_id: str) -> dict[str, dict[str, Any]]:
    return {s["resource"]: s for s in cluster.show(workflow_id)["steps"]}


def dead_letters(cluster: Cluster) -> list[dict[str, Any]]:
    result = cluster.cli("dead-letters", "--json")
    assert result.returncode == 0, result.stderr
    letters: list[dict[str, Any]] = json.loads(result.stdout)
    return letters


def test_events_held_up_by_a_store_locked_for_35_s_are_recorded_once_it_is_released_without_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    gate, passed = tmp_path / "gate", tmp_path / "passed"
    run = f"while [ ! -e {gate} ]; do sleep 0.05; done; touch {passed}"
    workflow_id = submit(
        cluster,
        "gated",
        f"  - {{kind: command, name: gated, role: work, spec: {{run: '{run}', creates: {passed}}}}}\n"
        f"  - {{kind: file, name: after, role: work, depends_on: [command/gated],"
        f" spec: {{path: {tmp_path}/after, content: x}}}}\n",
    )
    # the step runs and has reported all it reports before it ends; nothing else writes to the store
    wait_for(lambda: steps(cluster, workflow_id)["command/gated"]["message"] == "running", 30, "the step")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(cluster.workdir / "converge.db"), str(LOCK_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    locked_at = time.monotonic()
    try:
        blocked = subprocess.Popen(
            [sys.executable, "-m", "engine", "apply", str(cluster.write("other.yaml", one_file(tmp_path)))],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the apply's write waits for the lock: the engine says the store is down
        down = wait_for(lambda: health_when(cluster, ok=False), 20, "health to say the store is down")
        gate.touch()  # the step ends while the store is locked: its events wait in the stream
        wait_for(lambda: passed.exists() and health(cluster)["ingest"]["pending"] > 0, 20, "the events")
        reading = cluster.cli("workflows", "list", "--json")  # reads still work on WAL SQLite
        _, stderr = blocked.communicate(timeout=LOCK_S + 30)
        refused_after_s = time.monotonic() - locked_at
        during = health(cluster)
    finally:
        holder.wait(timeout=LOCK_S + 30)
        holder.stdout.close()

    assert down["ok"] is False
    assert "waited" in down["store"]["error"] and down["ingest"]["store_down_since"]
    assert reading.returncode == 0, reading.stderr
    assert blocked.returncode == 3, stderr
    assert "store" in stderr and "Traceback" not in stderr
    assert refused_after_s < LOCK_S, "the apply was refused only after the lock was released"
    assert during["store"]["ok"] is False
    # released: the events are recorded, and the workflow goes on and succeeds, by the same engine process
    wait_for(lambda: cluster.show(workflow_id)["state"] == "succeeded", 30, "the workflow to succeed")
    assert (tmp_path / "after").read_text() == "x"
    after = wait_for(lambda: health_when(cluster, ok=True), 10, "health to say all is well")
    assert after["store"] == {"ok": True, "error": None}
    assert after["ingest"]["pending"] == 0 and after["ingest"]["dead_letters"] == 0
    assert cluster.procs["engine"].poll() is None
    assert "the store is unavailable" in (cluster.logs / "engine.log").read_text()


def one_file(tmp_path: Path) -> str:
    return desired_state(
        "other", f"  - {{kind: file, name: other, role: work, spec: {{path: {tmp_path}/o, content: x}}}}\n"
    )


def test_a_poison_event_waits_in_the_dead_letter_stream_while_the_others_are_recorded(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    store = sqlite3.connect(cluster.workdir / "converge.db", isolation_level=None)
    store.execute(
        "CREATE TRIGGER poison BEFORE UPDATE ON converge_steps WHEN NEW.resource = 'file/poisoned' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END"
    )
    cluster.redis.xadd("converge:status", {"e": "not json"})
    workflow_id = submit(
        cluster,
        "poisoned",
        "".join(
            f"  - {{kind: file, name: {name}, role: work,{deps} spec: {{path: {tmp_path}/{name}, content: x}}}}\n"
            for name, deps in [("good", ""), ("poisoned", ""), ("after", " depends_on: [file/good],")]
        ),
    )

    # the poisoned step's events are refused three times each, then set aside; the others go through
    def poisoned_outcome() -> list[dict[str, Any]]:
        letters = dead_letters(cluster)
        finals = [d for d in letters if (d["event"] or {}).get("state") == "succeeded"]
        return letters if finals and any(d["raw"] == "not json" for d in letters) else []

    letters = wait_for(poisoned_outcome, 30, "the dead letters")
    poisoned = [d for d in letters if d["event"] is not None]
    assert {d["event"]["step_id"] for d in poisoned} == {steps(cluster, workflow_id)["file/poisoned"]["id"]}
    assert all(d["failures"] == 3 and "poisoned by the test" in d["error"] for d in poisoned)
    junk = next(d for d in letters if d["event"] is None)
    assert junk["failures"] == 1 and "not a status event" in junk["error"]
    wait_for(lambda: steps(cluster, workflow_id)["file/after"]["state"] == "succeeded", 30, "the next step")
    now = steps(cluster, workflow_id)
    assert now["file/good"]["state"] == "succeeded"
    assert now["file/poisoned"]["state"] == "queued"
    assert cluster.show(workflow_id)["state"] == "running"
    assert cluster.redis.xlen("converge:status") == 0

    store.execute("DROP TRIGGER poison")
    store.close()
    retried = cluster.cli("dead-letters", "retry", *[d["id"] for d in poisoned], "--json")
    assert retried.returncode == 0, retried.stderr
    assert sorted(json.loads(retried.stdout)["retried"]) == sorted(d["id"] for d in poisoned)

    wait_for(lambda: cluster.show(workflow_id)["state"] == "succeeded", 30, "the workflow to succeed")
    assert [d["raw"] for d in dead_letters(cluster)] == ["not json"]
    purged = cluster.cli("dead-letters", "purge", "--json")
    assert purged.returncode == 0 and json.loads(purged.stdout) == {"purged": 1}
    assert dead_letters(cluster) == []

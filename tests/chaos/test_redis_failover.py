"""Redis SIGKILLed and restarted in the middle of a workflow that three agents of one role serve.

The private Redis keeps nothing on disk (no RDB, no AOF: see common.localredis), so it comes back empty: the
role's lease and its epoch are lost with everything else, and the agents elect a leader again. Each step
logs its start and its end, so what ran, how often and when is measured from what the steps did.

Before the workflow the first leader hands the role over (a clean stop, then a start again), so that the
role is at epoch 2 when Redis dies: epoch 1 afterwards can only come from a campaign on the empty Redis, and
the elector logs it, since it logs a change of epoch, not a lease it merely renews.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from common.localredis import LocalRedis
from engine.fleet import leaders
from tests.chaos.test_failover import fast_heartbeats, leader
from tests.chaos.test_redis_restart import kill_and_restart
from tests.integration.conftest import Cluster, desired_state, wait_for

pytestmark = pytest.mark.chaos

ROLE = "work"
AGENTS = ("a1", "a2", "a3")
STEPS = ("s0", "s1", "s2", "s3")
RUNNING = "s1"  # the step that runs while Redis is down
STEP_S = 1.0
RUNNING_S = 5.0  # long enough to be seen started, then to outlast the restart
LEADING = f"leading role {ROLE} at epoch"


def chain(tmp_path: Path) -> str:
    """The steps in a chain, each logging `start NAME TIME` and, once it has slept, `end NAME TIME`."""
    log, resources, after = tmp_path / "runs.log", "", ""
    for name in STEPS:
        done = tmp_path / f"{name}.done"
        seconds = RUNNING_S if name == RUNNING else STEP_S
        run = (
            f'echo "start {name} $(date +%s.%N)" >> {log}; sleep {seconds:g}; '
            f'echo "end {name} $(date +%s.%N)" >> {log}; touch {done}'
        )
        resources += f"  - {{kind: command, name: {name}, role: {ROLE}{after}, spec: {{run: '{run}', creates: {done}}}}}\n"
        after = f", depends_on: [command/{name}]"
    return desired_state("redis-failover", resources)


def logged(tmp_path: Path, word: str) -> dict[str, list[float]]:
    """When each step logged `word` (start or end), by step name."""
    log = tmp_path / "runs.log"
    found: dict[str, list[float]] = {}
    for line in (log.read_text() if log.exists() else "").splitlines():
        first, name, at = line.split()
        if first == word:
            found.setdefault(name, []).append(float(at))
    return found


def alive(cluster: Cluster) -> bool:
    """True, or the test fails at once: every agent's process must outlive the restart."""
    for agent_id in AGENTS:
        assert cluster.procs[f"agent-{agent_id}"].poll() is None, (
            f"agent {agent_id} exited: see {cluster.logs}"
        )
    return True


def steps(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    """The workflow, its steps by name; None while the engine cannot answer (Redis is away a moment)."""
    try:
        response = httpx.get(
            f"{cluster.env['CONVERGE_URL']}/v1/workflows/{workflow_id}", headers=cluster.headers, timeout=10
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    document: dict[str, Any] = response.json()
    document["by_name"] = {s["resource"].removeprefix("command/"): s for s in document["steps"]}
    return document


def finished(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    document = alive(cluster) and steps(cluster, workflow_id)
    return document if document and document["state"] in ("succeeded", "failed", "cancelled") else None


def standings(cluster: Cluster) -> dict[str, dict[str, Any]] | None:
    """`converge agents list --json` by agent id; None while the engine cannot answer."""
    result = cluster.cli("agents", "list", "--json")
    return {a["id"]: a for a in json.loads(result.stdout)} if result.returncode == 0 else None


def one_leader_at(cluster: Cluster, epoch: int) -> str | None:
    """The agent that leads the role at `epoch`, once the other two are its backups."""
    seen = alive(cluster) and standings(cluster)
    if not seen:
        return None
    active = [i for i, a in seen.items() if a["state"] == "active"]
    backups = {i for i, a in seen.items() if a["state"] == "backup"}
    if len(active) != 1 or backups != set(AGENTS) - set(active):
        return None
    only = seen[active[0]]
    return active[0] if (only["leader_of"], only["epochs"]) == ([ROLE], {ROLE: epoch}) else None


def hand_over(cluster: Cluster) -> str:
    """Stop the leader cleanly (it gives its lease up) and start it again: a backup leads at epoch 2."""
    first = leader(cluster)
    cluster.stop(f"agent-{first}")
    cluster.start_agent(ROLE, agent_id=first)
    return str(wait_for(lambda: one_leader_at(cluster, 2), 30, "a backup to lead at epoch 2"))


def lease(client: redis.Redis) -> tuple[str | None, int] | None:
    """Who holds the role's lease on Redis and the role's epoch; None while Redis cannot be reached."""
    try:
        return leaders(client, [ROLE])[ROLE]
    except redis.RedisError:
        return None


def elector_lines(cluster: Cluster, agent_id: str, since: int) -> list[str]:
    """What the agent's elector logged after byte `since` of the agent's log."""
    text = (cluster.logs / f"agent-{agent_id}.log").read_bytes()[since:].decode(errors="replace")
    return [line for line in text.splitlines() if f"leading role {ROLE}" in line]


def ran_once_through_the_restart(
    tmp_path: Path, done: dict[str, Any], killed_at: float, restarted_at: float
) -> None:
    """The workflow succeeded and each step ran once, as the steps logged it; the running one outlasted the
    restart and was not delivered again, not even to find its `creates` already there."""
    assert done["state"] == "succeeded", done
    starts, ends = logged(tmp_path, "start"), logged(tmp_path, "end")
    assert (
        {n: len(t) for n, t in starts.items()}
        == {n: len(t) for n, t in ends.items()}
        == dict.fromkeys(STEPS, 1)
    ), (tmp_path / "runs.log").read_text()
    assert starts[RUNNING][0] < killed_at < restarted_at < ends[RUNNING][0], "Redis restarted while it ran"
    attempts = {n: (s["attempt"], s["changed"]) for n, s in done["by_name"].items()}
    assert attempts == dict.fromkeys(STEPS, (1, True)), attempts


def elected_again(cluster: Cluster, before: str, offsets: dict[str, int]) -> str:
    """The leader elected on the empty Redis, once it leads at epoch 1 with the other two its backups; only
    its elector logged a leadership after the restart, and a leader it replaced logged that it stepped down."""
    after = str(wait_for(lambda: one_leader_at(cluster, 1), 30, "one leader at epoch 1 and two backups"))
    lines = {i: elector_lines(cluster, i, offsets[i]) for i in AGENTS}
    leading = {i: [line for line in found if LEADING in line] for i, found in lines.items()}
    assert {i: len(found) for i, found in leading.items()} == {i: int(i == after) for i in AGENTS}, lines
    assert leading[after][0].endswith(f"{LEADING} 1"), leading[after]
    if after != before:
        assert any(f"no longer leading role {ROLE}" in line for line in lines[before]), lines[before]
    return after


def test_a_redis_restart_mid_workflow_with_three_agents_elects_one_leader_again_and_each_step_runs_once(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    fast_heartbeats(cluster)
    for agent_id in AGENTS:
        cluster.start_agent(ROLE, agent_id=agent_id)
    before = hand_over(cluster)
    applied = cluster.cli("apply", str(cluster.write("failover.yaml", chain(tmp_path))), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    wait_for(
        lambda: (
            RUNNING in logged(tmp_path, "start")
            and (wf := steps(cluster, workflow_id))
            and wf["by_name"][RUNNING]["state"] == "started"
        ),
        30,
        f"the engine to record that step {RUNNING} started",
    )

    offsets = {i: (cluster.logs / f"agent-{i}.log").stat().st_size for i in AGENTS}
    killed_at = time.time()
    try:
        kill_and_restart(redis_server)
        restarted_at = time.time()
        holder, epoch = wait_for(
            lambda: (found := lease(cluster.redis)) and found[0] and found, 30, "a lease"
        )
        elected_s = time.time() - restarted_at
        done = wait_for(lambda: finished(cluster, workflow_id), 90, "the workflow to finish")
    finally:
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()  # the session's Redis: leave it running for the next tests

    ran_once_through_the_restart(tmp_path, done, killed_at, restarted_at)
    assert epoch == 1, f"the role's epoch when the first lease was taken on the empty Redis: {epoch}"
    after = elected_again(cluster, before, offsets)
    assert holder == after, "the first lease taken on the empty Redis is the one that lasted"
    assert [done["by_name"][n]["agent"] for n in STEPS] == [before, before, after, after]
    assert alive(cluster)
    for agent_id in AGENTS:
        assert "Unrecoverable error" not in (cluster.logs / f"agent-{agent_id}.log").read_text()
    starts, ends = logged(tmp_path, "start"), logged(tmp_path, "end")
    print(
        f"Redis SIGKILL and restart: {restarted_at - killed_at:.2f}s; restart to a lease at epoch 1: "
        f"{elected_s:.2f}s; leader {before} (epoch 2) before, {after} (epoch 1) after; step {RUNNING} ran "
        f"{ends[RUNNING][0] - starts[RUNNING][0]:.2f}s; the workflow took "
        f"{ends[STEPS[-1]][0] - starts[STEPS[0]][0]:.2f}s"
    )

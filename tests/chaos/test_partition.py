"""A partition between an agent and Redis, cut by a TCP proxy the test controls.

During the partition the agent cannot report: a step that finishes keeps its outcome in the agent's outbox,
and a step that runs on is ended by its agent after the fifth failed heartbeat, before the engine holds the
agent lost (its TTL) and runs the step again. After the partition heals the kept outcome reaches the store,
and the two attempts of the long step never ran at the same time: each attempt logs its start and its end
(a watcher outside the step's process group logs the end even when the step is killed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.localredis import LocalRedis
from tests.chaos.proxy import TcpProxy
from tests.integration.conftest import Cluster, desired_state, wait_for

INTERVAL_S = 1.0
TTL_S = 10.0
PARTITION_S = 40.0
LONG_S = 12.0

LONG = """echo "start long $(date +%s.%N)" >> {log}
me=$$
setsid sh -c "while kill -0 $me 2>/dev/null; do sleep 0.05; done; echo \\"end long \\$(date +%s.%N)\\" >> {log}" \\
  </dev/null >/dev/null 2>&1 &
sleep {seconds}
touch {done}
"""
SHORT = """echo "start short $(date +%s.%N)" >> {log}
sleep 2
echo "end short $(date +%s.%N)" >> {log}
touch {done}
"""


@pytest.fixture
def proxy(redis_server: LocalRedis) -> Iterator[TcpProxy]:
    with TcpProxy(redis_server.port) as p:
        yield p


def entries(log: Path, word: str, name: str) -> list[float]:
    text = log.read_text() if log.exists() else ""
    return [float(line.split()[2]) for line in text.splitlines() if line.startswith(f"{word} {name}")]


def workflow(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{cluster.env['CONVERGE_URL']}/v1/workflows/{workflow_id}", headers=cluster.headers, timeout=10
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def steps(cluster: Cluster, workflow_id: str) -> dict[str, dict[str, Any]]:
    return {s["resource"]: s for s in workflow(cluster, workflow_id)["steps"]}


def test_a_partition_ends_the_long_step_before_it_runs_again_and_the_kept_outcome_reaches_the_store(
    cluster: Cluster, proxy: TcpProxy, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    for name, script in (("long", LONG), ("short", SHORT)):
        text = script.format(log=log, done=tmp_path / f"{name}-done", seconds=LONG_S)
        (tmp_path / f"{name}.sh").write_text(text)
    resources = "".join(
        f"  - {{kind: command, name: {name}, role: work, "
        f"spec: {{run: 'sh {tmp_path / name}.sh', creates: {tmp_path / name}-done}}}}\n"
        for name in ("long", "short")
    )
    cluster.env.update(
        CONVERGE_AGENT_HEARTBEAT_INTERVAL_S=str(INTERVAL_S), CONVERGE_AGENT_HEARTBEAT_TTL_S=str(TTL_S)
    )
    direct = cluster.env["CONVERGE_BROKER_URL"]
    cluster.env["CONVERGE_BROKER_URL"] = proxy.redis_url()  # only the agent goes through the proxy
    cluster.start_agent("work", agent_id="a1")
    cluster.env["CONVERGE_BROKER_URL"] = direct

    applied = cluster.cli(
        "apply", str(cluster.write("partition.yaml", desired_state("partition", resources))), "--json"
    )
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    wait_for(
        lambda: entries(log, "start", "long") and entries(log, "start", "short"), 30, "both steps to start"
    )
    wait_for(
        lambda: all(s["state"] == "started" for s in steps(cluster, workflow_id).values()),
        10,
        "the engine to record both starts",
    )

    proxy.blackhole()
    cut_at = time.time()
    redispatched = wait_for(
        lambda: steps(cluster, workflow_id)["command/long"]["attempt"] == 2 and time.time(),
        TTL_S + 10,
        "the engine to hold the agent lost and queue the long step again",
    )
    wait_for(lambda: time.time() - cut_at >= PARTITION_S, PARTITION_S + 5, "the partition to last")
    proxy.heal()

    try:
        done = wait_for(
            lambda: (wf := workflow(cluster, workflow_id))["state"] in ("succeeded", "failed") and wf,
            90,
            "the workflow to finish after the partition",
        )
    except AssertionError as exc:  # what the agent and the engine said, to tell a hang from a slow heal
        tails = {name: (cluster.logs / f"{name}.log").read_text()[-6000:] for name in ("agent-a1", "engine")}
        raise AssertionError(f"{exc}\nsteps: {steps(cluster, workflow_id)}\nlogs: {tails}") from None
    assert done["state"] == "succeeded", done
    by_name = {s["resource"]: s for s in done["steps"]}

    # the short step ran once, and its outcome, kept by the agent through the partition, is what the store has
    assert len(entries(log, "start", "short")) == len(entries(log, "end", "short")) == 1
    assert entries(log, "end", "short")[0] > cut_at, "the short step finished during the partition"
    short = by_name["command/short"]
    assert (short["attempt"], short["changed"]) == (1, True), short

    # the long step: attempt 1 was ended by its agent before the engine queued attempt 2; they never overlapped
    ends = wait_for(
        lambda: len(e := entries(log, "end", "long")) == 2 and e, 10, "both attempts' ends logged"
    )
    starts = entries(log, "start", "long")
    assert len(starts) == 2, log.read_text()
    assert ends[0] < redispatched, "the agent ended its step before the engine ran it again"
    assert ends[0] < starts[1], "two attempts of the long step ran at the same time"
    assert by_name["command/long"]["attempt"] == 2
    agent_log = (cluster.logs / "agent-a1.log").read_text()
    assert "heartbeats failed in a row: ending every running step" in agent_log
    print(
        f"partition at 0: long step's attempt 1 ended at {ends[0] - cut_at:.1f}s, engine re-queued it at "
        f"{redispatched - cut_at:.1f}s, attempt 2 started at {starts[1] - cut_at:.1f}s"
    )

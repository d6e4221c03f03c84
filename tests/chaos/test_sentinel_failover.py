"""Redis behind a real Sentinel: the primary SIGKILLed in the middle of a workflow, the replica promoted.

A primary, a replica and three sentinels (tests.chaos.sentinels); an engine and one agent that was enrolled
and admitted, so that it reaches Redis as its own ACL user, which the engine made on the primary and
copied to the replica (Redis does not replicate ACL SETUSER). The steps are a chain of `command`s of about
a second each. Each logs `check NAME TIME` from its guard (`unless`, run on every delivery of the step),
then `start` and `end` around its `run`, so what ran, how often and when comes from what the steps did.
The primary is killed once a step has started; the workflow must succeed on the new primary with every
step's `run` executed exactly once. The old primary, started again empty, becomes a replica of the new one
and gets the agent's user from the engine's duty (engine.acl_mirror).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import acl
from tests.chaos.sentinels import Sentinels
from tests.chaos.test_redis_failover import logged
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_admission import agent_entry, start_enrolling

pytestmark = pytest.mark.chaos

PASSWORD = "engine admin pw"
ROLE = "work"
AGENT = "w1"
STEPS = tuple(f"s{n}" for n in range(6))
KILLED_DURING = "s1"  # the primary dies once this step has started
STEP_S = 1.0


def chain(tmp_path: Path) -> str:
    """The steps in a chain: `check` from the guard on every delivery, `start` and `end` around the run."""
    log, resources, after = tmp_path / "runs.log", "", ""
    for name in STEPS:
        done = tmp_path / f"{name}.done"
        unless = f'echo "check {name} $(date +%s.%N)" >> {log}; test -e {done}'
        run = (
            f'echo "start {name} $(date +%s.%N)" >> {log}; sleep {STEP_S:g}; '
            f'echo "end {name} $(date +%s.%N)" >> {log}; touch {done}'
        )
        resources += (
            f"  - {{kind: command, name: {name}, role: {ROLE}{after}, "
            f"spec: {{run: '{run}', unless: '{unless}'}}}}\n"
        )
        after = f", depends_on: [command/{name}]"
    return desired_state("sentinel-failover", resources)


def counts(tmp_path: Path, word: str) -> dict[str, int]:
    return {name: len(times) for name, times in logged(tmp_path, word).items()}


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    with Sentinels(tmp_path / "redis", PASSWORD) as started:
        yield started


@pytest.fixture
def cluster(sentinels: Sentinels, tmp_path: Path) -> Iterator[Cluster]:
    """An engine on the sentinel URL, serving HTTPS (admission asks for it); the agent is the test's."""
    made = Cluster(sentinels.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}", tls=True)
    try:
        made.start_engine()
        yield made
    finally:
        made.stop_all()
        made.redis.close()


def users_on(sentinels: Sentinels, port: int) -> set[str]:
    try:
        with sentinels.node(port) as client:
            return {str(name) for name in client.acl_users()}
    except redis.RedisError:
        return set()


def workflow(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    """The workflow while the agent lives (the test fails at once if it exited); None while the CLI fails."""
    assert cluster.procs[f"agent-{AGENT}"].poll() is None, f"the agent exited: see {cluster.logs}"
    shown = cluster.cli("workflows", "show", workflow_id, "--json")
    if shown.returncode != 0:
        return None
    document: dict[str, Any] = json.loads(shown.stdout)
    return document


def finished(cluster: Cluster, workflow_id: str) -> dict[str, Any] | None:
    document = workflow(cluster, workflow_id)
    return document if document and document["state"] in ("succeeded", "failed", "aborted") else None


def test_a_workflow_succeeds_through_a_sentinel_failover_of_the_primary_with_each_step_run_once(
    sentinels: Sentinels, cluster: Cluster, tmp_path: Path
) -> None:
    start_enrolling(cluster, AGENT, ROLE)
    wait_for(lambda: agent_entry(cluster, AGENT).get("state") == "pending", 60, f"{AGENT} to enroll")
    admitted = cluster.cli("agents", "admit", AGENT)
    assert admitted.returncode == 0, admitted.stderr
    wait_for(lambda: cluster.agent_state(AGENT) == "active", 60, f"{AGENT} to lead role {ROLE}")
    # the agent's user is on the replica before the failover (copied by the engine, not by Redis)
    user = acl.user_name(AGENT)
    assert user in users_on(sentinels, sentinels.primary_port)
    wait_for(lambda: user in users_on(sentinels, sentinels.replica_port), 15, "the user on the replica")

    applied = cluster.cli("apply", str(cluster.write("chain.yaml", chain(tmp_path))), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    wait_for(lambda: KILLED_DURING in logged(tmp_path, "start"), 60, f"step {KILLED_DURING} to start")

    killed_at = time.time()
    sentinels.kill("primary")
    wait_for(
        lambda: (
            sentinels.primary_address() == ("127.0.0.1", sentinels.replica_port)
            and sentinels.is_primary(sentinels.replica_port)
        ),
        30,
        "the sentinels to promote the replica",
    )
    promoted_at = time.time()
    done = wait_for(lambda: finished(cluster, workflow_id), 120, "the workflow to finish")
    ended_at = time.time()

    assert done["state"] == "succeeded", done
    starts, ends = logged(tmp_path, "start"), logged(tmp_path, "end")
    checks = counts(tmp_path, "check")
    runs = (tmp_path / "runs.log").read_text()
    assert counts(tmp_path, "start") == counts(tmp_path, "end") == dict.fromkeys(STEPS, 1), runs
    assert starts[KILLED_DURING][0] < killed_at, "the primary died while a step ran"
    first_end_after = min(t for times in ends.values() for t in times if t > killed_at)
    first_start_after = min(t for times in starts.values() for t in times if t > killed_at)
    log = (cluster.logs / f"agent-{AGENT}.log").read_text()
    assert "Connected to agents.transport:SentinelTransport://" in log, "the agent's own transport"
    assert "Unrecoverable error" not in log, log
    assert "NOPERM" not in log and "WRONGPASS" not in log, log
    for name in ("engine", f"agent-{AGENT}"):  # the URL is shown with its password as ***
        assert PASSWORD not in (cluster.logs / f"{name}.log").read_text().replace("%20", " "), name
    # the old primary comes back empty, as a replica of the new one: the engine's duty gives it the users
    sentinels.restart("primary")
    restarted_at = time.time()
    wait_for(
        lambda: (
            sentinels.is_replica_of(sentinels.primary_port, sentinels.replica_port)
            and user in users_on(sentinels, sentinels.primary_port)
        ),
        60,
        "the old primary to be a replica again, with the agent's user",
    )
    caught_up_s = time.time() - restarted_at
    print(
        f"\nSentinel failover: kill to promotion {promoted_at - killed_at:.2f}s; kill to the first step end "
        f"{first_end_after - killed_at:.2f}s, to the first step start {first_start_after - killed_at:.2f}s; "
        f"kill to the workflow done {ended_at - killed_at:.2f}s; the steps ran from "
        f"{starts[STEPS[0]][0]:.2f} to {ends[STEPS[-1]][0]:.2f}: {ends[STEPS[-1]][0] - starts[STEPS[0]][0]:.2f}s; "
        f"old primary restarted to a replica with the agent's user: {caught_up_s:.2f}s; runs per step {counts(tmp_path, 'start')}, guard checks per step {checks}; attempts "
        f"{ {s['resource']: s['attempt'] for s in done['steps']} }"
    )

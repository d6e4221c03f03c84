"""The agent's pool grows with the work up to the throttle and shrinks back once idle (real agents)."""

from __future__ import annotations

from pathlib import Path

from common.localredis import LocalRedis
from tests.integration.burst import burst, children_of, most_at_once, started, submit, wait_succeeded
from tests.integration.conftest import Cluster, wait_for


def test_an_idle_agent_is_small_runs_a_burst_at_the_throttle_then_shrinks_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.env["CONVERGE_AGENT_POOL_KEEPALIVE_S"] = "1"
    cluster.start_agent("web", agent_id="web-pool", throttle=20)
    agent = cluster.procs["agent-web-pool"].pid
    assert len(children_of(agent)) <= 3

    root, gate = tmp_path / "burst", tmp_path / "go"
    workflow = submit(cluster, cluster.write("burst.yaml", burst(root, "pool-burst", 20, gate=gate)))
    try:
        wait_for(lambda: started(root) == 20, 60, "20 steps running at once")
    except AssertionError as exc:  # say what the pool was doing
        log = (cluster.logs / "agent-web-pool.log").read_text(errors="replace").splitlines()[-40:]
        processes = len(children_of(agent))
        raise AssertionError(
            f"{exc}: {started(root)} started, {processes} pool processes; agent log:\n" + "\n".join(log)
        ) from None
    assert len(children_of(agent)) == 20
    gate.touch()
    wait_succeeded(cluster, workflow)

    assert most_at_once(root) == 20
    wait_for(lambda: len(children_of(agent)) <= 1, 30, "the pool to shrink back to pool_min")


def test_a_burst_above_the_throttle_never_runs_more_than_the_throttle_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-few", throttle=4)
    root = tmp_path / "burst"
    workflow = submit(cluster, cluster.write("burst.yaml", burst(root, "few-burst", 10, hold_s=1)))
    wait_succeeded(cluster, workflow)
    assert most_at_once(root) == 4
    assert len(children_of(cluster.procs["agent-web-few"].pid)) <= 4


def test_with_autoscale_off_the_pool_holds_throttle_processes(cluster: Cluster) -> None:
    cluster.env["CONVERGE_AGENT_AUTOSCALE"] = "false"
    cluster.start_agent("web", agent_id="web-fixed", throttle=6)
    agent = cluster.procs["agent-web-fixed"].pid
    wait_for(lambda: len(children_of(agent)) == 6, 30, "6 pool processes")


def test_after_a_redis_restart_a_small_pool_still_grows_to_the_throttle(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    cluster.start_agent("web", agent_id="web-reconnect", throttle=8)
    agent = cluster.procs["agent-web-reconnect"].pid
    # pool_min: the prefetch count Celery sets again after a reconnect would be 1 (its pool's size)
    wait_for(lambda: len(children_of(agent)) == 1, 30, "one pool process")

    redis_server.stop()
    redis_server.start()
    wait_for(lambda: cluster.agent_state("web-reconnect") == "active", 60, "the agent to be back")
    log = cluster.logs / "agent-web-reconnect.log"
    wait_for(lambda: log.read_text(errors="replace").count("Connected to") >= 2, 30, "Celery to reconnect")

    root, gate = tmp_path / "burst", tmp_path / "go"
    workflow = submit(cluster, cluster.write("burst.yaml", burst(root, "after-restart", 8, gate=gate)))
    wait_for(lambda: started(root) == 8, 60, "8 steps running at once after the restart")
    gate.touch()
    wait_succeeded(cluster, workflow)

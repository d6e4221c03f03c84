"""The probes a service manager runs, against a real engine and a real agent on a private Redis: the engine's
`GET /v1/ready` and `converge engine ready`, `converge-agent health` (liveness and readiness), and the agent's
JSON log lines.

One Redis, engine and agent for the module, and the tests run in order: the later ones stop, kill or pause
what the earlier ones found working.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, wait_for

AGENT = "probe-agent"
PASSWORD = "probe-redis-secret"
HEARTBEAT_S = 0.2  # short, so that a stopped agent's file is stale within a second


@dataclass
class Probes:
    server: LocalRedis
    cluster: Cluster
    agent: subprocess.Popen[bytes]
    agent_stderr: Path

    def ready(self) -> httpx.Response:
        return httpx.get(self.cluster.env["CONVERGE_URL"] + "/v1/ready", timeout=30)  # no token

    def health(self) -> httpx.Response:
        return httpx.get(self.cluster.env["CONVERGE_URL"] + "/v1/health", timeout=30)

    def agent_health(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "agents", "health", "--id", AGENT, *args]
        return subprocess.run(argv, env=self.cluster.env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probes]:
    workdir = tmp_path_factory.mktemp("probes")
    server = LocalRedis(workdir / "redis", password=PASSWORD).start()
    cluster = Cluster(server.url, workdir, f"sqlite:///{workdir / 'converge.db'}")
    cluster.env.update(
        CONVERGE_AGENT_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S),
        CONVERGE_AGENT_HEARTBEAT_TTL_S="3",
    )
    stderr = cluster.logs / "agent.stderr"
    try:
        cluster.start_engine()
        argv = [sys.executable, "-m", "agents", "run", "--id", AGENT, "--role", "web", "--log-format", "json"]
        with (cluster.logs / "agent.stdout").open("wb") as out, stderr.open("wb") as err:
            agent = subprocess.Popen(argv, env=cluster.env, stdout=out, stderr=err, start_new_session=True)
        cluster.procs["agent"] = agent
        probes = Probes(server, cluster, agent, stderr)
        wait_for(lambda: probes.agent_health().returncode == 0, 60, "the agent to be ready")
        yield probes
    finally:
        cluster.stop_all()
        cluster.redis.close()
        server.stop()


def test_the_engine_is_ready_while_its_store_and_redis_answer(probes: Probes) -> None:
    answer = probes.ready()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ready": True,
        "store": {"ok": True, "error": None},
        "redis": {"ok": True, "error": None},
    }
    ready = probes.cluster.cli("engine", "ready")
    assert (ready.returncode, ready.stdout.strip()) == (0, "ready"), ready.stderr
    as_json = probes.cluster.cli("engine", "ready", "--json", "--url", probes.cluster.env["CONVERGE_URL"])
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["ready"] is True


def test_the_agent_is_alive_and_ready_while_it_runs(probes: Probes) -> None:
    ready = probes.agent_health()
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.startswith(f"agent {AGENT} is ready")
    alive = probes.agent_health("--alive", "--json")
    assert alive.returncode == 0, alive.stdout + alive.stderr
    document = json.loads(alive.stdout)
    assert document["ok"] is True
    assert document["agent"]["pid"] == probes.agent.pid
    assert document["agent"]["admission"] == "trusted"
    assert f"converge.agent.{AGENT}" in document["agent"]["queues"]
    assert PASSWORD not in alive.stdout


def test_a_paused_agent_is_not_alive_once_its_heartbeat_is_three_intervals_old(probes: Probes) -> None:
    os.killpg(probes.agent.pid, signal.SIGSTOP)
    try:
        stuck = wait_for(
            lambda: (result := probes.agent_health("--alive")).returncode == 3 and result,
            10,
            "the paused agent's health file to go stale",
        )
        assert "the agent's last heartbeat was" in stuck.stdout and "s ago" in stuck.stdout
    finally:
        os.killpg(probes.agent.pid, signal.SIGCONT)
    wait_for(lambda: probes.agent_health().returncode == 0, 30, "the agent to beat again")


def test_without_redis_the_engine_answers_503_and_the_agent_is_alive_but_not_ready(probes: Probes) -> None:
    assert probes.server.process is not None
    probes.server.process.kill()  # Redis dies, the engine and the agent stay
    probes.server.process.wait()

    answer = probes.ready()
    assert answer.status_code == 503
    body = answer.json()
    assert body["ready"] is False and body["store"]["ok"] is True and body["redis"]["ok"] is False
    assert "does not answer PING" in body["redis"]["error"] and "CONVERGE_BROKER_URL" in body["error"]
    assert PASSWORD not in answer.text and "***" in body["redis"]["error"]
    assert probes.health().status_code == 200  # liveness: the engine itself answers

    not_ready = probes.cluster.cli("engine", "ready")
    assert not_ready.returncode == 3
    assert not_ready.stdout.startswith("not ready: Redis at") and len(not_ready.stdout.splitlines()) == 1
    assert PASSWORD not in not_ready.stdout + not_ready.stderr

    cut_off = wait_for(
        lambda: (result := probes.agent_health()).returncode == 3 and result, 20, "the agent to miss Redis"
    )
    assert "cannot reach Redis" in cut_off.stdout
    assert probes.agent_health("--alive").returncode == 0


def test_every_line_the_agent_writes_on_stderr_is_json_with_a_message(probes: Probes) -> None:
    wait_for(lambda: b"broker lost" in probes.agent_stderr.read_bytes(), 30, "Celery's lost-connection line")
    lines = probes.agent_stderr.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 10  # the start lines, Celery's, the leadership's, the lost connection's
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry["message"], str) and entry["level"] and entry["time"]
    messages = [json.loads(line)["message"] for line in lines]
    assert f"agent {AGENT}" in messages
    assert any(m.endswith("ready.") for m in messages)
    assert any("Connection to broker lost" in m for m in messages)
    assert not any(PASSWORD in m for m in messages)


def test_a_killed_agent_is_not_alive(probes: Probes) -> None:
    os.killpg(probes.agent.pid, signal.SIGKILL)
    probes.agent.wait(timeout=20)
    gone = probes.agent_health("--alive")
    assert gone.returncode == 3
    assert gone.stdout.strip() == (
        f"agent {AGENT} is not running (process {probes.agent.pid} is gone): start it with `converge-agent run`"
    )
    assert "Traceback" not in gone.stderr


def test_an_engine_that_is_gone_is_not_ready(probes: Probes) -> None:
    probes.cluster.stop("engine")
    gone = probes.cluster.cli("engine", "ready")
    assert gone.returncode == 3
    assert "cannot reach the engine" in gone.stderr and "Traceback" not in gone.stderr

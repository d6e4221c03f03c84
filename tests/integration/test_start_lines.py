"""What the engine and an agent say when they start, and a second engine on a taken port.

Against a private Redis that requires a password: the start lines name the broker, never its password.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.localredis import LocalRedis
from common.version import converge_version
from tests.integration.conftest import Cluster, wait_for

PASSWORD = "s3cret"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis", password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(locked_redis: LocalRedis, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(locked_redis.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    c.start_engine()
    yield c
    c.stop_all()
    c.redis.close()


def engine_log(cluster: Cluster) -> str:
    return (cluster.logs / "engine.log").read_text(errors="replace")


def test_engine_says_where_it_listens_its_broker_store_and_version_without_the_password(
    cluster: Cluster, locked_redis: LocalRedis
) -> None:
    bind = cluster.env["CONVERGE_API_BIND"]
    wait_for(lambda: f"listening on http://{bind}" in engine_log(cluster), 10, "the start lines")
    text = engine_log(cluster)
    assert f"broker redis://:***@127.0.0.1:{locked_redis.port}/0" in text
    assert f"store {cluster.env['CONVERGE_STORE_URL']}" in text
    assert f"converge {converge_version()}" in text
    assert PASSWORD not in text


def test_a_second_engine_on_a_taken_port_says_so_and_exits_3(cluster: Cluster) -> None:
    bind = cluster.env["CONVERGE_API_BIND"]
    second = subprocess.run(
        [sys.executable, "-m", "engine", "engine", "run"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 3, second.stderr
    assert f"port {bind} is in use" in second.stderr
    assert "stop the other engine or choose another --api-bind" in second.stderr
    assert "Traceback" not in second.stderr and "Errno" not in second.stderr
    assert "listening on" not in second.stderr  # nothing started: it stopped before the start lines
    assert PASSWORD not in second.stdout + second.stderr


def test_an_agent_says_its_id_roles_throttle_queues_and_broker_without_celerys_banner(
    cluster: Cluster, locked_redis: LocalRedis
) -> None:
    cluster.start_agent("web", "db", agent_id="web-1", throttle=3)
    log = cluster.logs / "agent-web-1.log"
    wait_for(lambda: "ready." in log.read_text(errors="replace"), 30, "Celery's ready line")
    text = log.read_text(errors="replace")
    assert f"converge-agent {converge_version()}" in text
    assert "agent web-1" in text
    assert "roles web, db" in text
    assert "throttle 3 (steps at once)" in text
    assert "pool 1 to 3 processes, back to 1 after 10s without a step" in text
    assert "queues converge.agent.web-1, and converge.role.web, converge.role.db while it leads" in text
    assert f"broker redis://:***@127.0.0.1:{locked_redis.port}/0" in text
    assert "-------------- " not in text and "[config]" not in text  # Celery's banner
    assert "superuser privileges" not in text  # Celery's root warning
    assert PASSWORD not in text

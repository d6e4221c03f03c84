"""`converge engine health`: exit 0 while the engine and its Redis answer, 3 once they do not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster


def _health(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "engine", "engine", "health", "--json"]
    return subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=60)


def test_engine_health_is_0_when_healthy_and_3_when_redis_or_the_engine_is_gone(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis").start()
    cluster = Cluster(server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    try:
        cluster.start_engine()
        healthy = _health(cluster)
        assert healthy.returncode == 0, healthy.stderr
        assert json.loads(healthy.stdout)["redis"]["ok"] is True
        server.stop()
        sick = _health(cluster)
        assert sick.returncode == 3
        assert json.loads(sick.stdout)["redis"]["ok"] is False
        cluster.stop_all()
        gone = _health(cluster)
        assert gone.returncode == 3
        assert "Traceback" not in gone.stderr
    finally:
        cluster.stop_all()
        cluster.redis.close()
        server.stop()

"""What `converge engine run` checks and says at start: JSON lines when asked, Redis's eviction policy."""

from __future__ import annotations

import json
from pathlib import Path

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, wait_for


def _entries(path: Path) -> list[dict[str, str]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def test_the_engine_logs_json_lines_with_time_level_logger_and_message(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis").start()
    cluster = Cluster(server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    cluster.env["CONVERGE_LOG_FORMAT"] = "json"
    try:
        cluster.start_engine()
        log = cluster.logs / "engine.log"
        bind = cluster.env["CONVERGE_API_BIND"]

        def listening() -> bool:
            return any(e.get("message") == f"listening on http://{bind}" for e in _entries(log))

        wait_for(listening, 15, "the start line as JSON")
        entry = next(e for e in _entries(log) if e["message"].startswith("listening on"))
        assert entry["level"] == "INFO"
        assert entry["logger"] == "converge.engine"
        assert entry["time"].endswith("+00:00")
        assert not any("maxmemory-policy" in e["message"] for e in _entries(log))  # noeviction: quiet
    finally:
        cluster.stop_all()
        cluster.redis.close()
        server.stop()


def test_the_engine_warns_at_start_when_redis_may_evict_keys(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis").start()
    cluster = Cluster(server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    cluster.redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        cluster.start_engine()
        log = cluster.logs / "engine.log"

        def warned() -> bool:
            text = log.read_text(errors="replace")
            return "maxmemory-policy is 'allkeys-lru', not 'noeviction'" in text

        wait_for(warned, 15, "the eviction warning")
        assert "WARNING converge.engine" in log.read_text(errors="replace")
    finally:
        cluster.stop_all()
        cluster.redis.close()
        server.stop()

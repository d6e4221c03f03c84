"""A TLS-only Redis SIGKILLed and restarted (losing everything) while an agent runs a chain of commands.

The same rounds as tests/chaos/test_redis_restart.py, over `rediss://`: the agent must use its own
transport there too (agents.transport: its restart fix), reconnect over TLS, and run every step once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.test_redis_restart import restart_redis_during_a_chain
from tests.integration.conftest import Cluster
from tests.integration.test_redis_tls import PASSWORD, TlsRedis, certificates

pytestmark = pytest.mark.chaos

ROUNDS = 2


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path / "redis", certificates(tmp_path / "redis-tls"), PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_on_tls(tls_redis: TlsRedis, tmp_path: Path) -> Iterator[Cluster]:
    url = tls_redis.tls_url(f"ssl_ca_certs={tls_redis.certs.ca_cert}")
    made = Cluster(url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    try:
        made.start_engine()
        yield made
    finally:
        made.stop_all()
        made.redis.close()


def test_an_agent_on_tls_only_redis_survives_its_restarts_mid_step_and_no_step_runs_twice(
    cluster_on_tls: Cluster, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    cluster = cluster_on_tls
    cluster.start_agent("work", agent_id="work-1")
    for round_ in range(ROUNDS):
        restart_redis_during_a_chain(cluster, tls_redis, tmp_path, round_)
    log = (cluster.logs / "agent-work-1.log").read_text()
    assert "Connected to agents.transport:Transport://" in log, "the agent's own transport, over TLS"
    assert "Unrecoverable error" not in log, log

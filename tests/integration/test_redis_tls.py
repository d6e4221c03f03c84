"""Redis over TLS only (`rediss://`), end to end: a real redis-server with `--port 0` and a TLS port, a
password, the engine and an enrolled, admitted agent on it; and agents that cannot trust the server.

The server's certificate, for 127.0.0.1, is signed by a CA of its own, made with the engine's CA code
(engine.tls); the wrong CA is another one made the same way. The engine's URL names the CA in its query;
the agent gets it, with its own user, in its admission (engine.acl.url_for).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from common.localredis import LocalRedis, free_port
from engine import acl, tls
from tests.chaos.test_redis_failover import logged
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_admission import agent_entry, start_enrolling

pytestmark = pytest.mark.integration

PASSWORD = "tls admin pw"
ROLE = "work"
AGENT = "t1"
STEPS = ("s0", "s1", "s2")


class TlsRedis(LocalRedis):
    """A private Redis that listens on a TLS port only, with the server certificate in `certs`."""

    def __init__(self, workdir: Path, certs: tls.TlsFiles, password: str) -> None:
        super().__init__(workdir, password=password)
        self.certs = certs

    def listen_args(self) -> list[str]:
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certs.server_cert),
            "--tls-key-file", str(self.certs.server_key),
            "--tls-ca-cert-file", str(self.certs.ca_cert),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, ssl=True, ssl_ca_certs=str(self.certs.ca_cert), **kwargs
        )

    def tls_url(self, query: str) -> str:
        return f"rediss://:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/0?{query}"


def certificates(folder: Path) -> tls.TlsFiles:
    """A CA and a server certificate for 127.0.0.1 (and this host's names) that it signs."""
    files = tls.TlsFiles(folder)
    tls.init(files, [])
    return files


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path / "redis", certificates(tmp_path / "redis-tls"), PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(tls_redis: TlsRedis, tmp_path: Path) -> Iterator[Cluster]:
    """An engine on the TLS Redis, serving HTTPS (admission asks for it); the agents are the test's."""
    url = tls_redis.tls_url(f"ssl_cert_reqs=required&ssl_ca_certs={tls_redis.certs.ca_cert}")
    made = Cluster(url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}", tls=True)
    try:
        made.start_engine()
        yield made
    finally:
        made.stop_all()
        made.redis.close()


def chain(tmp_path: Path) -> str:
    """`command` steps in a chain, each appending `ran NAME TIME` to runs.log once its guard says so."""
    log, resources, after = tmp_path / "runs.log", "", ""
    for name in STEPS:
        done = tmp_path / f"{name}.done"
        run = f'echo "ran {name} $(date +%s.%N)" >> {log}; touch {done}'
        resources += (
            f"  - {{kind: command, name: {name}, role: {ROLE}{after}, "
            f"spec: {{run: '{run}', unless: 'test -e {done}'}}}}\n"
        )
        after = f", depends_on: [command/{name}]"
    return desired_state("redis-tls", resources)


def test_a_workflow_runs_over_tls_only_redis_with_an_admitted_agent_and_each_step_once(
    cluster: Cluster, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    started = time.monotonic()
    start_enrolling(cluster, AGENT, ROLE)
    wait_for(lambda: agent_entry(cluster, AGENT).get("state") == "pending", 60, f"{AGENT} to enroll")
    admitted = cluster.cli("agents", "admit", AGENT)
    assert admitted.returncode == 0, admitted.stderr
    wait_for(lambda: cluster.agent_state(AGENT) == "active", 60, f"{AGENT} to lead role {ROLE}")
    up_s = time.monotonic() - started

    applied_at = time.monotonic()
    done = cluster.apply(cluster.write("chain.yaml", chain(tmp_path)))
    applied_s = time.monotonic() - applied_at

    assert done["exit_code"] == 0 and done["workflow"]["state"] == "succeeded", done
    runs = (tmp_path / "runs.log").read_text()
    assert {name: len(times) for name, times in logged(tmp_path, "ran").items()} == dict.fromkeys(STEPS, 1), (
        runs
    )
    # the agent reached Redis as its own user, through our transport (its fixes kept), over TLS only
    users = {str(c.get("user", "")) for c in cluster.redis.client_list()}
    assert acl.user_name(AGENT) in users, users
    log = (cluster.logs / f"agent-{AGENT}.log").read_text()
    assert "Connected to agents.transport:Transport://" in log, log
    assert (
        f"(TLS, the server's certificate checked against {tls_redis.certs.ca_cert}, and its host name)" in log
    )
    assert "Unrecoverable error" not in log and "Traceback" not in log, log
    for name in ("engine", f"agent-{AGENT}"):  # the URL is shown with its password as ***
        assert PASSWORD not in (cluster.logs / f"{name}.log").read_text().replace("%20", " "), name
    # a warm shutdown over TLS ends as on plain TCP: the agent waits on no step and on no blocked read
    stopping = time.monotonic()
    cluster.stop(f"agent-{AGENT}")
    stop_s = time.monotonic() - stopping
    print(
        f"\nRedis over TLS: enrolled and admitted agent active in {up_s:.2f}s; {len(STEPS)} steps in "
        f"{applied_s:.2f}s; the agent stopped in {stop_s:.2f}s"
    )


def trusted_agent(cluster: Cluster, broker_url: str) -> subprocess.CompletedProcess[str]:
    """`converge-agent run` given the broker's own credentials (not enrolled) on `broker_url`."""
    return subprocess.run(
        [sys.executable, "-m", "agents", "run", "--id", "wrong-ca", "--role", ROLE],
        env={**cluster.env, "CONVERGE_BROKER_URL": broker_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("trust", ["another CA", "no CA: the system's"])
def test_an_agent_that_cannot_trust_the_redis_certificate_exits_3_saying_so(
    cluster: Cluster, tls_redis: TlsRedis, tmp_path: Path, trust: str
) -> None:
    query = "ssl_cert_reqs=required"
    if trust == "another CA":
        query += f"&ssl_ca_certs={certificates(tmp_path / 'other-ca').ca_cert}"
    result = trusted_agent(cluster, tls_redis.tls_url(query))

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "certificate" in result.stderr and "ssl_ca_certs" in result.stderr, result.stderr
    assert f"rediss://:***@127.0.0.1:{tls_redis.port}/0" in result.stderr, result.stderr
    assert PASSWORD not in result.stderr.replace("%20", " "), result.stderr


def test_an_agent_whose_ca_file_is_missing_exits_3_naming_it(
    cluster: Cluster, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    result = trusted_agent(cluster, tls_redis.tls_url(f"ssl_ca_certs={missing}"))

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"ssl_ca_certs={missing} cannot be read" in result.stderr, result.stderr


def test_an_engine_that_cannot_trust_the_redis_certificate_exits_3_saying_so(
    cluster: Cluster, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    other = certificates(tmp_path / "other-ca").ca_cert
    env = {
        **cluster.env,
        "CONVERGE_BROKER_URL": tls_redis.tls_url(f"ssl_ca_certs={other}"),
        "CONVERGE_API_BIND": f"127.0.0.1:{free_port()}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "engine", "engine", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "over TLS" in result.stderr and f"checked against {other}" in result.stderr, result.stderr
    assert PASSWORD not in result.stderr.replace("%20", " "), result.stderr

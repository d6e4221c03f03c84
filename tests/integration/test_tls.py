"""The engine's HTTPS: `engine init`, the CLI's verification of the certificate, and where plain HTTP is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.localredis import free_port
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


def test_the_cli_trusts_the_engine_by_its_ca_file_or_its_pinned_fingerprint(tls_cluster: Cluster) -> None:
    fingerprint = json.loads(tls_cluster.cli("engine", "init", "--json").stdout)["fingerprint"]
    ca_file = tls_cluster.env.pop("CONVERGE_CA")

    untrusted = tls_cluster.cli("agents", "list")
    tls_cluster.env["CONVERGE_CA_FINGERPRINT"] = fingerprint.replace(":", "").lower()
    pinned = tls_cluster.cli("agents", "list", "--json")
    tls_cluster.env["CONVERGE_CA"] = ca_file
    both = tls_cluster.cli("agents", "list", "--json")

    assert untrusted.returncode == 3
    assert "CONVERGE_CA" in untrusted.stderr and "CONVERGE_CA_FINGERPRINT" in untrusted.stderr
    assert pinned.returncode == 0, pinned.stderr
    assert both.returncode == 0, both.stderr


@pytest.mark.parametrize("with_ca_file", [False, True])
def test_a_wrong_fingerprint_is_refused_with_exit_code_3(tls_cluster: Cluster, with_ca_file: bool) -> None:
    if not with_ca_file:
        tls_cluster.env.pop("CONVERGE_CA")
    tls_cluster.env["CONVERGE_CA_FINGERPRINT"] = ":".join(["AB"] * 32)

    result = tls_cluster.cli("workflows", "list")

    assert result.returncode == 3
    assert "not the AB:AB" in result.stderr
    assert "fingerprint that `converge engine init` printed" in result.stderr


def test_engine_init_keeps_what_exists_and_force_renews_only_the_server_certificate(
    tls_cluster: Cluster,
) -> None:
    tls = tls_cluster.workdir / "engine-home" / "tls"
    first_server = (tls / "server.pem").read_bytes()

    again = json.loads(tls_cluster.cli("engine", "init", "--json").stdout)
    unchanged_server = (tls / "server.pem").read_bytes()
    forced = json.loads(
        tls_cluster.cli("engine", "init", "--force", "--san", "engine.example", "--json").stdout
    )

    assert again["token"] is None  # the first admin token is made once
    assert unchanged_server == first_server
    assert forced["fingerprint"] == again["fingerprint"]
    assert (tls / "server.pem").read_bytes() != first_server
    assert oct((tls / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert (
        tls_cluster.cli("workflows", "list").returncode == 0
    )  # the running engine's certificate still holds


def run_engine(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "engine", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    env.update(
        CONVERGE_HOME=str(home),
        CONVERGE_STORE_URL=f"sqlite:///{home / 'converge.db'}",
        CONVERGE_BROKER_URL="redis://127.0.0.1:9/0",  # never reached: the engine refuses first
    )
    return env


def test_plain_http_on_an_address_that_is_not_loopback_is_refused(engine_env: dict[str, str]) -> None:
    engine_env["CONVERGE_API_BIND"] = f"0.0.0.0:{free_port()}"

    result = run_engine(engine_env, "--insecure-http")

    assert result.returncode == 2
    assert "plain HTTP is served only on a loopback address, not on 0.0.0.0" in result.stderr


def test_https_without_engine_init_is_refused_with_what_to_run(engine_env: dict[str, str]) -> None:
    engine_env["CONVERGE_API_BIND"] = f"127.0.0.1:{free_port()}"

    result = run_engine(engine_env)

    assert result.returncode == 2
    assert "run `converge engine init` first" in result.stderr

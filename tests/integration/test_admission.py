"""Admission of agents over HTTPS, with a real engine, Redis and agent processes: a pending agent gets
nothing, an admitted one converges, a revoked one loses Redis and the API at once, a denied one exits."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.enroll import proof
from common import signing
from common.localredis import free_port
from engine import acl
from tests.integration.conftest import Cluster, desired_state, wait_for

pytestmark = pytest.mark.integration


def start_enrolling(cluster: Cluster, agent_id: str, role: str) -> subprocess.Popen[bytes]:
    """An agent that knows only the engine's address and CA: no usable broker URL, no engine key, no token."""
    shared = cluster.env
    cluster.env = {
        k: v for k, v in shared.items() if k not in ("CONVERGE_AGENT_ENGINE_KEY", "CONVERGE_TOKEN")
    }
    cluster.env |= {
        "CONVERGE_AGENT_ENGINE_URL": shared["CONVERGE_URL"],
        "CONVERGE_AGENT_ENGINE_CA": shared["CONVERGE_CA"],
        "CONVERGE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    try:
        argv = [sys.executable, "-m", "agents", "run", "--id", agent_id, "--role", role]
        return cluster._spawn(f"agent-{agent_id}", argv)
    finally:
        cluster.env = shared


def agent_entry(cluster: Cluster, agent_id: str) -> dict[str, Any]:
    listed = cluster.cli("agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return next((a for a in json.loads(listed.stdout) if a["id"] == agent_id), {})


def engine_http(cluster: Cluster) -> httpx.Client:
    trust = ssl.create_default_context(cafile=cluster.env["CONVERGE_CA"])
    return httpx.Client(base_url=cluster.env["CONVERGE_URL"], verify=trust, timeout=30)


def workflow_state(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    shown = cluster.cli("workflows", "show", workflow_id, "--json")
    assert shown.returncode == 0, shown.stderr
    view: dict[str, Any] = json.loads(shown.stdout)
    return view


def redis_users_connected(cluster: Cluster) -> set[str]:
    return {str(client.get("user", "")) for client in cluster.redis.client_list()}


def test_a_pending_agent_gets_nothing_until_admitted_and_loses_redis_and_the_api_when_revoked(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = tls_cluster
    agent = start_enrolling(cluster, "web-1", "web")
    wait_for(lambda: agent_entry(cluster, "web-1").get("state") == "pending", 60, "web-1 to wait")
    target = tmp_path / "admitted.txt"
    desired = cluster.write(
        "admission.yaml",
        desired_state(
            "admission", f"  - {{kind: file, name: f, role: web, spec: {{path: {target}, content: x}}}}\n"
        ),
    )
    applied = cluster.cli("apply", str(desired), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]

    # two status requests of the agent later, its step still waits in the role's queue
    for _ in range(2):
        seen = agent_entry(cluster, "web-1")["last_seen"]
        wait_for(lambda: agent_entry(cluster, "web-1")["last_seen"] != seen, 30, "web-1 to ask again")  # noqa: B023
    pending = workflow_state(cluster, workflow_id)
    assert [step["state"] for step in pending["steps"]] == ["queued"]
    assert not target.exists()
    assert acl.user_name("web-1") not in redis_users_connected(cluster)
    log = (cluster.logs / "agent-web-1.log").read_text()
    assert "waits for the operator: `converge agents admit web-1`" in log, log
    assert "celery@" not in log and "Connected to redis" not in log, log

    admitted = cluster.cli("agents", "admit", "web-1")

    assert admitted.returncode == 0, admitted.stderr
    wait_for(lambda: workflow_state(cluster, workflow_id)["state"] == "succeeded", 60, "the workflow")
    assert target.read_text() == "x"
    log = (cluster.logs / "agent-web-1.log").read_text()
    assert "NOPERM" not in log and "no permissions" not in log, log  # its own user is enough to run
    folder = cluster.workdir / "agent-state" / "web-1"
    for private in ("agent.key", "admission.json"):
        assert oct((folder / private).stat().st_mode & 0o777) == "0o600"
    kept = json.loads((folder / "admission.json").read_text())
    agent_token = {"Authorization": f"Bearer {kept['api_token']}"}
    with engine_http(cluster) as http:
        assert (
            http.get("/v1/agents", headers=agent_token).status_code == 403
        )  # an agent's token: agent routes
    assert agent_entry(cluster, "web-1")["admission"] == "admitted"

    revoked = cluster.cli("agents", "revoke", "web-1")

    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(kept["broker_url"]).ping()
    with engine_http(cluster) as http:
        assert http.get("/v1/agents", headers=agent_token).status_code == 401
    assert acl.user_name("web-1") not in redis_users_connected(cluster)
    entry = agent_entry(cluster, "web-1")
    assert (entry["state"], entry["admission"]) == ("unavailable", "revoked")
    # the revoked agent, still running, stops instead of knocking on Redis's door for ever
    wait_for(lambda: agent.poll() is not None, 60, "the revoked agent to exit")
    assert agent.returncode == 1
    log = (cluster.logs / "agent-web-1.log").read_text()
    assert "agent web-1 was revoked by the operator" in log and "Traceback" not in log, log


def enroll_with(http: httpx.Client, key: Ed25519PrivateKey) -> httpx.Response:
    body = {"id": "db-1", "roles": ["db"], "public_key": signing.public_pem(key), "capabilities": {}}
    return http.post("/v1/enroll", json=body)


def test_an_enrollment_with_a_known_id_and_another_key_is_refused_and_changes_nothing(
    tls_cluster: Cluster,
) -> None:
    first, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with engine_http(tls_cluster) as http:
        enrolled = enroll_with(http, first)
        refused = enroll_with(http, impostor)
        again = enroll_with(http, first)
        impostor_status = http.post("/v1/enroll/status", json=proof("db-1", impostor).model_dump())
        status = http.post("/v1/enroll/status", json=proof("db-1", first).model_dump())

    assert (enrolled.status_code, enrolled.json()["state"]) == (200, "pending")
    assert refused.status_code == 409
    assert "enrolled with another key" in refused.json()["error"]
    assert (again.status_code, again.json()["state"]) == (200, "pending")
    assert impostor_status.status_code == 401
    assert (status.status_code, status.json()["state"]) == (200, "pending")
    assert status.json()["api_token"] is None and status.json()["broker_url"] is None
    listed = json.loads(tls_cluster.cli("agents", "list", "--json").stdout)
    assert [(a["id"], a["state"]) for a in listed] == [("db-1", "pending")]


def test_deny_makes_the_waiting_agent_exit_1_with_a_message(tls_cluster: Cluster) -> None:
    agent = start_enrolling(tls_cluster, "db-2", "db")
    wait_for(lambda: agent_entry(tls_cluster, "db-2").get("state") == "pending", 60, "db-2 to wait")
    revoke_pending = tls_cluster.cli("agents", "revoke", "db-2")

    denied = tls_cluster.cli("agents", "deny", "db-2")

    assert revoke_pending.returncode == 1
    assert "it has no credentials to revoke: deny it" in revoke_pending.stderr
    assert denied.returncode == 0, denied.stderr
    wait_for(lambda: agent.poll() is not None, 30, "the denied agent to exit")
    assert agent.returncode == 1
    log = (tls_cluster.logs / "agent-db-2.log").read_text()
    assert "agent db-2 was denied by the operator" in log, log
    assert agent_entry(tls_cluster, "db-2")["state"] == "denied"


def test_malformed_enrollments_and_status_requests_get_a_4xx_with_a_message(tls_cluster: Cluster) -> None:
    pem = json.dumps(signing.public_pem(Ed25519PrivateKey.generate()))
    agent = f'"id": "web-9", "roles": ["web"], "public_key": {pem}'
    deep = '{"n": ' * 3000 + '"leaf"' + "}" * 3000
    bodies = [
        ("/v1/enroll", "{}"),
        ("/v1/enroll", f'{{"id": "../etc", "roles": ["web"], "public_key": {pem}}}'),
        ("/v1/enroll", f'{{"id": "web-9", "roles": [], "public_key": {pem}}}'),
        ("/v1/enroll", '{"id": "web-9", "roles": ["web"], "public_key": "not a key"}'),
        ("/v1/enroll", f'{{{agent}, "capabilities": {{"x": "{"y" * 20_000}"}}}}'),
        ("/v1/enroll", f'{{{agent}, "capabilities": {deep}}}'),
        ("/v1/enroll/status", f'{{"id": "web-9", "at_ms": 1{"0" * 400}, "signature": "AA=="}}'),
        ("/v1/enroll/status", '{"id": "nobody", "at_ms": 1, "signature": "not base64"}'),
    ]
    with engine_http(tls_cluster) as http:
        answers = [http.post(path, content=body) for path, body in bodies]
        decided = http.post("/v1/agents/web-9/admit", headers=tls_cluster.headers)

    for (path, _), answer in zip(bodies, answers, strict=True):
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
        assert answer.json()["error"]
    assert decided.status_code == 404  # it never enrolled
    assert json.loads(tls_cluster.cli("agents", "list", "--json").stdout) == []

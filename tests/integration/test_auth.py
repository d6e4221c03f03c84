"""Operator tokens against a real engine over HTTPS: who may do what, and what a refusal leaves behind."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Cluster, desired_state

pytestmark = pytest.mark.integration


def api(cluster: Cluster, token: str | None = None, **headers: str) -> httpx.Client:
    """An HTTPS client that trusts the cluster's CA and sends `token`, if any."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    trust = ssl.create_default_context(cafile=cluster.env["CONVERGE_CA"])
    return httpx.Client(base_url=cluster.env["CONVERGE_URL"], verify=trust, headers=headers, timeout=30)


def new_token(cluster: Cluster, name: str, role: str) -> str:
    result = cluster.cli("tokens", "create", "--name", name, "--role", role, "--json")
    assert result.returncode == 0, result.stderr
    token: str = json.loads(result.stdout)["token"]
    return token


def estate(tmp_path: Path) -> str:
    resource = f'  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/f, content: "x"}}}}\n'
    return desired_state("guarded", resource)


def stored_workflows(cluster: Cluster) -> int:
    with api(cluster, cluster.token) as client:
        return len(client.get("/v1/workflows").json()) + len(client.get("/v1/history").json())


def test_requests_without_a_token_or_with_a_revoked_one_are_refused_and_change_nothing(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    revoked = new_token(tls_cluster, "leaver", "admin")
    assert tls_cluster.cli("tokens", "revoke", "leaver").returncode == 0
    body = {"source": estate(tmp_path), "filename": "guarded.yaml"}

    answers = []
    for token in (None, revoked, "cvg_made-up"):
        with api(tls_cluster, token, Origin="https://attacker.example") as client:
            answers += [
                client.post("/v1/workflows", json=body),
                client.post("/v1/plan", json=body),
                client.post("/v1/history/prune", params={"older_than_days": 0}),
                client.delete("/v1/agents/anyone"),
                client.get("/v1/workflows"),
            ]

    assert {a.status_code for a in answers} == {401}
    assert all(a.json()["error"] for a in answers)
    assert all(a.headers["www-authenticate"] == "Bearer" for a in answers)
    assert all("access-control-allow-origin" not in a.headers for a in answers)
    assert stored_workflows(tls_cluster) == 0


def test_a_viewer_reads_but_cannot_apply_cancel_or_prune(tls_cluster: Cluster, tmp_path: Path) -> None:
    viewer = new_token(tls_cluster, "auditor", "viewer")
    path = tls_cluster.write("guarded.yaml", estate(tmp_path))

    with api(tls_cluster, viewer) as client:
        assert client.get("/v1/workflows").status_code == 200
        assert client.get("/v1/agents").status_code == 200
        refused = [
            client.post("/v1/workflows", json={"source": path.read_text(), "filename": "g.yaml"}),
            client.post("/v1/workflows/some-id/cancel"),
            client.post("/v1/dead-letters/purge", json={"ids": []}),
            client.post("/v1/history/prune"),
        ]
    tls_cluster.env["CONVERGE_TOKEN"] = viewer
    by_cli = tls_cluster.cli("apply", str(path))

    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "viewer" in refused[0].json()["error"]
    assert by_cli.returncode == 1
    assert "403" in by_cli.stderr and "CONVERGE_TOKEN" in by_cli.stderr
    assert stored_workflows(tls_cluster) == 0


def test_an_operator_applies_but_only_an_admin_prunes_history(tls_cluster: Cluster, tmp_path: Path) -> None:
    operator = new_token(tls_cluster, "deployer", "operator")
    body = {"source": estate(tmp_path), "filename": "guarded.yaml"}

    with api(tls_cluster, operator) as client:
        applied = client.post("/v1/workflows", json=body)
        prune = client.post("/v1/history/prune")
    with api(tls_cluster, tls_cluster.token) as client:
        admin_prune = client.post("/v1/history/prune")

    assert applied.status_code == 201
    assert prune.status_code == 403
    assert admin_prune.status_code == 200
    assert stored_workflows(tls_cluster) == 1


def test_health_and_the_ca_are_open_the_docs_are_not(tls_cluster: Cluster) -> None:
    with api(tls_cluster) as anonymous:
        health = anonymous.get("/v1/health")
        ca = anonymous.get("/v1/ca")
        docs = [anonymous.get(p).status_code for p in ("/docs", "/openapi.json", "/redoc")]
    with api(tls_cluster, tls_cluster.token) as admin:
        docs_with_token = [admin.get(p).status_code for p in ("/docs", "/openapi.json", "/redoc")]

    assert health.status_code == 200 and health.json()["ok"] is True
    assert tls_cluster.token not in health.text
    assert ca.text == Path(tls_cluster.env["CONVERGE_CA"]).read_text()
    assert docs == [401, 401, 401]
    assert docs_with_token == [404, 404, 404]


def test_refusals_are_logged_with_the_route_and_the_token_name_never_the_token(tls_cluster: Cluster) -> None:
    viewer = new_token(tls_cluster, "auditor", "viewer")
    with api(tls_cluster, viewer) as client:
        client.post("/v1/history/prune")
    with api(tls_cluster, "cvg_a-guess") as client:
        client.get("/v1/workflows")

    log = (tls_cluster.logs / "engine.log").read_text()
    assert "refused POST /v1/history/prune (403, token auditor)" in log
    assert "refused GET /v1/workflows (401, token -)" in log
    assert viewer not in log and "cvg_a-guess" not in log


def test_tokens_list_shows_names_roles_and_use_but_never_a_token(tls_cluster: Cluster) -> None:
    viewer = new_token(tls_cluster, "auditor", "viewer")
    with api(tls_cluster, viewer) as client:
        client.get("/v1/workflows")

    listed = tls_cluster.cli("tokens", "list", "--json")
    human = tls_cluster.cli("tokens", "list")

    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["auditor"]["role"] == "viewer" and rows["auditor"]["last_used_at"]
    assert rows["admin"]["role"] == "admin"
    for secret in (viewer, tls_cluster.token or ""):
        assert secret not in listed.stdout and secret not in human.stdout
    assert tls_cluster.cli("tokens", "create", "--name", "auditor").returncode == 1

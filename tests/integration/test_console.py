"""The console against a real engine over HTTPS: login, the session cookie's roles, the CSRF defences, and
the JSON API that keeps ignoring the cookie."""

from __future__ import annotations

import ssl

import httpx
import pytest

from engine.session import COOKIE, csrf_of
from tests.integration.conftest import Cluster
from tests.integration.test_auth import new_token

pytestmark = pytest.mark.integration


def browser(cluster: Cluster, token: str | None = None) -> httpx.Client:
    """An HTTPS client that trusts the cluster's CA, holding `token` as the console's session cookie."""
    trust = ssl.create_default_context(cafile=cluster.env["CONVERGE_CA"])
    client = httpx.Client(base_url=cluster.env["CONVERGE_URL"], verify=trust, timeout=30)
    if token:
        client.cookies.set(COOKIE, token)
    return client


def origin(cluster: Cluster) -> str:
    return cluster.env["CONVERGE_URL"].rstrip("/")


def test_login_refuses_a_bad_token_and_sets_a_strict_httponly_secure_cookie_for_a_good_one(
    tls_cluster: Cluster,
) -> None:
    viewer = new_token(tls_cluster, "watcher", "viewer")
    with browser(tls_cluster) as client:
        assert client.get("/console/workflows").status_code == 303  # to the login page
        assert client.get("/console/login").status_code == 200
        bad = client.post(
            "/console/login", data={"token": "cvg_made-up"}, headers={"Origin": origin(tls_cluster)}
        )
        assert bad.status_code == 401
        assert COOKIE not in bad.headers.get("set-cookie", "")
        good = client.post("/console/login", data={"token": viewer}, headers={"Origin": origin(tls_cluster)})
        assert good.status_code == 303
        cookie = good.headers["set-cookie"]
        assert all(part in cookie for part in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"))
        assert client.get("/console/workflows").status_code == 200
        assert client.get("/console/logout").status_code == 303
        assert client.get("/console/workflows").status_code == 303


def test_a_viewer_sees_the_pages_but_its_cancel_is_refused(tls_cluster: Cluster) -> None:
    viewer = new_token(tls_cluster, "watcher", "viewer")
    with browser(tls_cluster, viewer) as client:
        for page in ("/console/workflows", "/console/workflows?view=history", "/console/agents"):
            assert client.get(page).status_code == 200, page
        headers = {"Origin": origin(tls_cluster), "X-CSRF-Token": csrf_of(viewer)}
        refused = client.post("/console/workflows/anything/cancel", headers=headers)
    assert refused.status_code == 403
    assert "viewer" in refused.json()["error"]


def test_a_post_from_another_origin_or_without_the_csrf_token_is_refused(tls_cluster: Cluster) -> None:
    assert tls_cluster.token
    token = tls_cluster.token
    with browser(tls_cluster, token) as client:
        answers = [
            client.post("/console/workflows/x/cancel", headers={"X-CSRF-Token": csrf_of(token)}),
            client.post(
                "/console/workflows/x/cancel",
                headers={"Origin": "https://attacker.example", "X-CSRF-Token": csrf_of(token)},
            ),
            client.post("/console/workflows/x/cancel", headers={"Origin": origin(tls_cluster)}),
            client.post(
                "/console/workflows/x/retry",
                headers={"Origin": origin(tls_cluster), "X-CSRF-Token": "0" * 64},
            ),
        ]
        login = client.post(
            "/console/login", data={"token": token}, headers={"Origin": "https://attacker.example"}
        )
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert login.status_code == 403


def test_the_json_api_ignores_the_session_cookie(tls_cluster: Cluster) -> None:
    assert tls_cluster.token
    with browser(tls_cluster, tls_cluster.token) as client:
        assert client.get("/v1/workflows").status_code == 401
        assert client.post("/v1/history/prune", params={"all": "true"}).status_code == 401

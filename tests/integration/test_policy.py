"""Policies end to end: `converge policy set` on a real engine over HTTPS reaches a running agent of the
role within one heartbeat interval, over its file; bad input and callers without an admin's token change
nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.burst import burst, most_at_once
from tests.integration.conftest import Cluster, wait_for
from tests.integration.test_credentials import agent_token, start_agent_with_token

pytestmark = pytest.mark.integration

HEARTBEAT_INTERVAL_S = 1.0  # the agents' default
MARGIN_S = 5.0  # a shared, busy machine: the fetch, the file written, this test's own polling


def kept_policy(path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # not written yet (it is replaced whole, never half written)
        return {}
    return document


def announced_throttle(cluster: Cluster, agent_id: str) -> int | None:
    result = cluster.cli("agents", "list", "--json")
    if result.returncode != 0:
        return None
    return next((a.get("throttle") for a in json.loads(result.stdout) if a["id"] == agent_id), None)


def shown_policies(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    result = cluster.cli("policy", "show", "--json", *args)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def test_a_policy_reaches_the_running_agents_of_its_role_over_their_file(tls_cluster: Cluster) -> None:
    cluster = tls_cluster
    cluster.env.pop("CONVERGE_AGENT_THROTTLE", None)
    written = cluster.agent_cli("config", "set", "throttle=20", "id=web-01", "roles=web")
    assert written.returncode == 0, written.stderr
    start_agent_with_token(cluster, "web", "web-01")
    kept = Path(cluster.env["CONVERGE_AGENT_STATE_DIR"]) / "web-01" / "policy.json"

    result = cluster.cli("policy", "set", "--role", "web", "throttle=5")
    set_at = time.monotonic()

    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: kept_policy(kept).get("values") == {"throttle": 5},
        HEARTBEAT_INTERVAL_S + MARGIN_S,
        "the agent to keep the policy it fetched",
    )
    assert time.monotonic() - set_at < HEARTBEAT_INTERVAL_S + MARGIN_S
    assert kept_policy(kept)["roles"] == {"throttle": "web"}
    shown = cluster.agent_cli("config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)["settings"]
    assert settings["throttle"] == {"value": 5, "source": "policy"}
    assert settings["roles"] == {"value": ["web"], "source": "file"}
    log = cluster.logs / "agent-web-01.log"
    wait_for(
        lambda: "policy for role web: throttle=5 (was 20 from file)" in log.read_text(),
        10,
        "the agent to log the change",
    )
    [record] = shown_policies(cluster, "--role", "web")
    assert (record["key"], record["value"], record["set_by"]) == ("throttle", 5, "admin")
    # The running agent applies it at once, without a restart: it announces throttle 5 and runs 5 at once.
    wait_for(lambda: announced_throttle(cluster, "web-01") == 5, 20, "the agent to announce throttle 5")
    assert "configuration: throttle 20 -> 5" in log.read_text()
    root = Path(cluster.workdir) / "burst"
    ran = cluster.apply(cluster.write("burst.yaml", burst(root, "policy-burst", 10, hold_s=1)))
    assert ran["exit_code"] == 0, ran
    assert most_at_once(root) == 5

    unset = cluster.cli("policy", "unset", "--role", "web", "throttle")
    assert unset.returncode == 0, unset.stderr
    wait_for(
        lambda: kept_policy(kept).get("values") == {},
        HEARTBEAT_INTERVAL_S + MARGIN_S,
        "the agent to drop the policy",
    )
    settings = json.loads(cluster.agent_cli("config", "show", "--json").stdout)["settings"]
    assert settings["throttle"] == {"value": 20, "source": "file"}
    wait_for(lambda: announced_throttle(cluster, "web-01") == 20, 20, "the agent to go back to its file's 20")


def test_bad_input_and_callers_without_an_admins_token_change_no_policy(cluster: Cluster) -> None:
    assert cluster.cli("policy", "set", "--role", "web", "throttle=5").returncode == 0

    refused = {
        "a setting of each host": cluster.cli("policy", "set", "--role", "web", "broker_url=redis://x:1/0"),
        "an unknown key": cluster.cli("policy", "set", "--role", "web", "throttel=3"),
        "a bad value": cluster.cli("policy", "set", "--role", "web", "throttle=0"),
        "a bad heartbeat": cluster.cli("policy", "set", "--role", "web", "heartbeat_interval_s=5"),
    }

    assert {what: r.returncode for what, r in refused.items()} == dict.fromkeys(refused, 2)
    assert "cannot be set by a policy" in refused["a setting of each host"].stderr
    assert "did you mean 'throttle'?" in refused["an unknown key"].stderr
    assert "heartbeat_ttl_s (8) must be longer" in refused["a bad heartbeat"].stderr

    viewer = cluster.cli("tokens", "create", "--name", "viewer-1", "--role", "viewer", "--json")
    assert viewer.returncode == 0, viewer.stderr
    tokens = {
        "no token": None,
        "an agent's": agent_token(cluster, "web-01"),
        "a viewer's": json.loads(viewer.stdout)["token"],
    }
    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], timeout=30) as api:

        def bearer(token: str | None) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"} if token else {}

        def put(token: str | None, values: dict[str, Any]) -> httpx.Response:
            return api.put("/v1/policies/web", json={"values": values}, headers=bearer(token))

        answers = {who: put(token, {"throttle": 9}).status_code for who, token in tokens.items()}
        deleted = api.delete("/v1/policies/web", headers=bearer(tokens["a viewer's"]))
        bad_value = put(cluster.token, {"throttle": "many"})  # the engine checks, whatever the client
        fetched = api.get(
            "/v1/agent/policy",
            params={"role": "web"},
            headers=bearer(tokens["an agent's"]),
        )

    assert answers == {"no token": 401, "an agent's": 403, "a viewer's": 403}
    assert deleted.status_code == 403
    assert bad_value.status_code == 422 and "throttle=many" in bad_value.json()["error"]
    assert fetched.status_code == 200 and fetched.json()["values"] == {"throttle": 5}
    assert [(r["key"], r["value"]) for r in shown_policies(cluster)] == [("throttle", 5)]

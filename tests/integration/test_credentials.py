"""Credentials on demand against a real engine and agent: the value reaches the command that needs it, and
nothing else; every other request for it is refused and audited."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, inspect, select, text

from common.store import open_store
from engine import auth
from tests.integration.conftest import Cluster, desired_state, wait_for
from tests.integration.test_no_leaks import flower_pages, start_flower

pytestmark = pytest.mark.integration

ROUTE = "/v1/agent/credentials"


def set_credential(cluster: Cluster, name: str, value: str) -> subprocess.CompletedProcess[str]:
    """`converge credentials set NAME`, the value on stdin as a script would give it."""
    return cluster.cli("credentials", "set", name, stdin=value + "\n")


def agent_token(cluster: Cluster, agent_id: str) -> str:
    """An agent's own token, made in the store as admission makes it: role `agent`, named after the agent."""
    store = open_store(cluster.env["CONVERGE_STORE_URL"])
    try:
        return auth.create(store, agent_id, auth.Role.AGENT)
    finally:
        store.close()


def start_agent_with_token(cluster: Cluster, role: str, agent_id: str) -> str:
    token = agent_token(cluster, agent_id)
    cluster.env.update(CONVERGE_AGENT_ENGINE_URL=cluster.env["CONVERGE_URL"], CONVERGE_AGENT_API_TOKEN=token)
    if cluster.tls:
        cluster.env["CONVERGE_AGENT_ENGINE_CA"] = cluster.env["CONVERGE_CA"]
    cluster.start_agent(role, agent_id=agent_id)
    return token


def audit(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    result = cluster.cli("credentials", "audit", "--json", *args)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def redis_text(client: redis.Redis) -> str:
    """Every key of Redis and what it holds, read the way its type is read, as one text."""
    readers: dict[str, Callable[[bytes], Any]] = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda key: client.lrange(key, 0, -1),
        "set": client.smembers,
        "zset": lambda key: client.zrange(key, 0, -1),
        "stream": client.xrange,
    }
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        parts.append(repr((key, readers[kind.decode() if isinstance(kind, bytes) else kind](key))))
    return "\n".join(parts)


def store_rows(url: str) -> dict[str, list[str]]:
    """Every row of every table of the store, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: [repr(tuple(row)) for row in conn.execute(select(text("*")).select_from(text(table)))]
                for table in inspect(engine).get_table_names()
            }
    finally:
        engine.dispose()


def test_a_command_gets_its_credential_and_the_value_shows_nowhere_else(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    value = "pw-" + secrets.token_urlsafe(16)
    stored = set_credential(tls_cluster, "db-password", value)
    assert stored.returncode == 0, stored.stderr
    start_agent_with_token(tls_cluster, "db", "db-01")
    flower = start_flower(tls_cluster)  # before the run: it shows the tasks whose events it saw
    out = tmp_path / "received"
    resource = (
        "  - kind: command\n    name: migrate\n    role: db\n    credentials: [db-password]\n"
        f"    spec: {{run: 'printf %s \"$DB_PASSWORD\" > {out}', creates: {out},\n"
        "           env: {DB_PASSWORD: {credential: db-password}}}\n"
    )
    applied = tls_cluster.cli(
        "apply", str(tls_cluster.write("db.yaml", desired_state("db", resource))), "--wait"
    )

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert out.read_text() == value
    [granted] = audit(tls_cluster, "--name", "db-password")
    assert granted["outcome"] == "granted" and granted["agent"] == "db-01" and granted["attempt"] == 1

    outputs = [applied.stdout, applied.stderr, stored.stdout, stored.stderr]
    for args in (
        ("workflows", "list", "--json"),
        ("workflows", "history"),
        ("workflows", "history", "--json"),
        ("agents", "list", "--json"),
        ("credentials", "list"),
        ("credentials", "list", "--json"),
        ("credentials", "audit"),
        ("credentials", "audit", "--json"),
    ):
        result = tls_cluster.cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        outputs += [result.stdout, result.stderr]
    workflow_id = json.loads(tls_cluster.cli("workflows", "history", "--json").stdout)[0]["id"]
    outputs.append(tls_cluster.cli("workflows", "show", workflow_id, "--json").stdout)
    outputs.append(tls_cluster.cli("workflows", "show", workflow_id).stdout)
    assert not [o for o in outputs if value in o]
    pages = flower_pages(flower, "db-01")
    assert any("migrate" in text for path, text in pages.items() if path.startswith("flower /task/"))
    assert not {path: text for path, text in pages.items() if value in text}

    dump = redis_text(tls_cluster.redis)
    assert workflow_id in dump  # the scan reads what the keys hold: the status stream names the workflow
    assert value not in dump
    rows = store_rows(tls_cluster.env["CONVERGE_STORE_URL"])
    assert rows["converge_credentials"] and rows["converge_credential_audit"]
    assert not {table: r for table, r in rows.items() if value in "".join(r)}
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != out]
    assert [p for p in files if p.suffix == ".log"]
    assert not [p for p in files if value.encode() in p.read_bytes()]


def running_step(cluster: Cluster, workflow_id: str, attempt: int) -> dict[str, Any]:
    def started() -> dict[str, Any] | None:
        view = json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)
        step: dict[str, Any] = view["steps"][0]
        return step if step["state"] == "started" and step["attempt"] == attempt else None

    found: dict[str, Any] = wait_for(started, 60, f"attempt {attempt} of the step to run")
    return found


def test_requests_not_from_the_running_attempt_are_refused_and_audited(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert set_credential(cluster, "db-password", "v4lue-" + secrets.token_hex(8)).returncode == 0
    assert set_credential(cluster, "other", "0ther-" + secrets.token_hex(8)).returncode == 0
    token = start_agent_with_token(cluster, "db", "db-01")
    bystander = agent_token(cluster, "db-02")
    release, tried = tmp_path / "release", tmp_path / "tried"
    # The first attempt fails, the second waits for the test: attempt 1 is an old attempt while 2 runs.
    run = (
        f"if [ ! -e {tried} ]; then touch {tried}; exit 1; fi; while [ ! -e {release} ]; do sleep 0.05; done"
    )
    resource = (
        "  - kind: command\n    name: hold\n    role: db\n    credentials: [db-password]\n"
        "    retry: {attempts: 2, backoff_s: 0}\n"
        f"    spec: {{run: '{run}', unless: 'false'}}\n"
    )
    applied = cluster.cli("apply", str(cluster.write("hold.yaml", desired_state("hold", resource))), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    step = running_step(cluster, workflow_id, attempt=2)
    ask = {"name": "db-password", "step_id": step["id"], "attempt": 2, "epoch": step["epoch"]}

    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], timeout=30) as api:

        def fetch(who: str, **changes: Any) -> httpx.Response:
            return api.post(ROUTE, json=ask | changes, headers={"Authorization": f"Bearer {who}"})

        answers = {
            "another agent": fetch(bystander),
            "an old attempt": fetch(token, attempt=1),
            "a name the step does not list": fetch(token, name="other"),
            "an operator's token": fetch(cluster.token or ""),
        }
        granted = fetch(token)
        release.touch()
        wait_for(lambda: _finished(cluster, workflow_id), 60, "the workflow to succeed")
        answers["a finished step"] = fetch(token)

    assert granted.status_code == 200 and granted.json()["value"].startswith("v4lue-")
    assert {what: a.status_code for what, a in answers.items()} == dict.fromkeys(answers, 403)
    assert not [a for a in answers.values() if "value" in a.json()]
    refused = [e for e in audit(cluster) if e["outcome"] == "refused"]
    reasons = " | ".join(e["reason"] for e in refused)
    assert len(refused) == len(answers), reasons
    assert "not running on agent db-02" in reasons
    assert "attempt 1 of step" in reasons and "not its current attempt (2)" in reasons
    assert "'other' is not in the `credentials` list" in reasons
    assert "is not an agent's" in reasons
    assert "is succeeded, not started" in reasons


def _finished(cluster: Cluster, workflow_id: str) -> bool:
    view = json.loads(cluster.cli("workflows", "show", workflow_id, "--json").stdout)
    return bool(view["state"] == "succeeded")


def test_an_agent_token_may_call_only_the_agent_routes(cluster: Cluster) -> None:
    token = agent_token(cluster, "db-01")

    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], timeout=30) as api:
        answer = api.get("/v1/workflows", headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 403
    assert "may call only /v1/agent/" in answer.json()["error"]

"""Clear answers from the real engine and CLIs: Redis down is exit 3 and nothing stored, a bad setting is exit 2
and a message before anything starts, identical applies at once make one workflow, and what the API cannot
take (a lone surrogate, !!binary content) is a 4xx, never a 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, desired_state, wait_for

TRIES = 50


def directory(tmp_path: Path, name: str, role: str = "web") -> str:
    resource = f"  - {{kind: directory, name: {name}, role: {role}, spec: {{path: {tmp_path / name}}}}}\n"
    return desired_state(name, resource)


def workflows(cluster: Cluster) -> list[dict[str, Any]]:
    listed = cluster.cli("workflows", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def test_apply_with_redis_down_exits_3_stores_nothing_and_applies_once_redis_is_back(
    cluster: Cluster, redis_server: LocalRedis, tmp_path: Path
) -> None:
    path = cluster.write("estate.yaml", directory(tmp_path, "during-outage"))
    redis_server.stop()
    try:
        refused = cluster.cli("apply", str(path))
    finally:
        redis_server.start()  # shared by the session's other tests: back before anything can fail

    assert refused.returncode == 3, refused.stderr
    assert "cannot reach Redis" in refused.stderr and "nothing was stored" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert workflows(cluster) == []

    cluster.start_agent("web", agent_id="web-1")

    def applied() -> dict[str, Any] | None:
        result = cluster.cli("apply", str(path), "--wait", "--json", "--timeout", "60")
        document: dict[str, Any] | None = json.loads(result.stdout) if result.returncode == 0 else None
        return document

    assert wait_for(applied, 120, "the apply once Redis is back")["workflow"]["state"] == "succeeded"
    assert (tmp_path / "during-outage").is_dir()


def settings_env(tmp_path: Path, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    env.update(
        CONVERGE_BROKER_URL=broker_url,
        CONVERGE_STORE_URL=f"sqlite:///{tmp_path / 'converge.db'}",
        CONVERGE_AGENT_CONFIG=str(tmp_path / "agent.toml"),
    )
    return env | extra


ENGINE = [sys.executable, "-m", "engine"]
AGENT = [sys.executable, "-m", "agents"]
BAD_SETTINGS = {
    # case: (command, environment, what the message must name)
    "engine_plan_timeout": (
        [*ENGINE, "engine", "run"],
        {"CONVERGE_PLAN_TIMEOUT_S": "abc"},
        "CONVERGE_PLAN_TIMEOUT_S",
    ),
    "engine_api_bind": ([*ENGINE, "engine", "run"], {"CONVERGE_API_BIND": "localhost"}, "CONVERGE_API_BIND"),
    "engine_broker_option": ([*ENGINE, "engine", "run", "--broker-url", "foo"], {}, "--broker-url"),
    "engine_store_option": ([*ENGINE, "engine", "run", "--store-url", "nonsense"], {}, "--store-url"),
    "agent_broker_option": ([*AGENT, "run", "--role", "web", "--broker-url", "foo"], {}, "broker_url"),
    "agent_broker_env": (
        [*AGENT, "run", "--role", "web"],
        {"CONVERGE_BROKER_URL": "foo"},
        "CONVERGE_BROKER_URL",
    ),
    "apply_plan_timeout": (
        [*ENGINE, "apply", "estate.yaml"],
        {"CONVERGE_PLAN_TIMEOUT_S": "abc"},
        "CONVERGE_PLAN_TIMEOUT_S",
    ),
    "apply_engine_url": (
        [*ENGINE, "apply", "estate.yaml"],
        {"CONVERGE_URL": "localhost:8765"},
        "CONVERGE_URL",
    ),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_a_bad_setting_is_exit_2_and_a_message_before_anything_starts(
    case: str, redis_server: LocalRedis, tmp_path: Path
) -> None:
    argv, extra, named = BAD_SETTINGS[case]
    (tmp_path / "estate.yaml").write_text(directory(tmp_path, "never"))
    env = settings_env(tmp_path, redis_server.url, **extra)
    watcher = redis.Redis.from_url(redis_server.url)
    connections = int(watcher.info("stats")["total_connections_received"])

    done = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2, done.stderr
    prog = "converge-agent" if argv[:3] == AGENT else "converge"
    assert done.stderr.startswith(f"{prog}: ") and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert int(watcher.info("stats")["total_connections_received"]) == connections, "it connected to Redis"
    assert not (tmp_path / "converge.db").exists(), "it opened the store"
    watcher.close()


def test_two_identical_applies_at_once_make_one_workflow_every_time(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.env["CONVERGE_URL"]
    barrier = threading.Barrier(2)
    # No agent serves the role: each workflow stays running, so the second apply must find the first.
    sources = [directory(tmp_path, f"race-{i}", role="nobody") for i in range(TRIES)]

    def post(source: str) -> dict[str, Any]:
        with httpx.Client(base_url=url, headers=cluster.headers, timeout=30) as client:
            barrier.wait()
            answer = client.post("/v1/workflows", json={"source": source, "filename": "race.yaml"})
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    with ThreadPoolExecutor(2) as pool:
        for source in sources:
            first, second = pool.map(post, [source, source])
            assert first["workflow"]["id"] == second["workflow"]["id"]
            assert sorted([first["created"], second["created"]]) == [False, True]

    assert len(workflows(cluster)) == TRIES


def test_a_lone_surrogate_in_the_body_is_422_with_a_message(cluster: Cluster) -> None:
    url = cluster.env["CONVERGE_URL"]
    for body in (b'{"source": "\\ud800"}', b'{"source": "kind: x", "filename": "a\\udfffb.yaml"}'):
        answer = httpx.post(
            f"{url}/v1/workflows",
            content=body,
            headers={**cluster.headers, "content-type": "application/json"},
        )
        assert answer.status_code == 422, answer.text
        assert "surrogate" in answer.json()["error"]
    not_json = httpx.post(
        f"{url}/v1/workflows",
        content=b"\xff{",
        headers={**cluster.headers, "content-type": "application/json"},
    )
    assert 400 <= not_json.status_code < 500 and not_json.json()


BINARY = "  - kind: file\n    name: blob\n    role: web\n    spec:\n      path: /tmp/blob\n      content: !!binary aGVsbG8=\n"


def test_binary_content_is_exit_2_from_apply_with_file_and_line_and_nothing_sent(cluster: Cluster) -> None:
    source = desired_state("blob", BINARY)
    path = cluster.write("blob.yaml", source)

    refused = cluster.cli("apply", str(path))

    assert refused.returncode == 2, refused.stderr
    assert f"{path}:10: resources[0].spec.content: is binary data (!!binary)" in refused.stderr
    assert workflows(cluster) == []
    # the engine's validation is the same: sent directly, it is refused too, not a 500
    answer = httpx.post(
        f"{cluster.env['CONVERGE_URL']}/v1/workflows",
        json={"source": source, "filename": "b.yaml"},
        headers=cluster.headers,
    )
    assert answer.status_code == 422 and "!!binary" in answer.json()["error"]

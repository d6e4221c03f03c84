"""Two engines, two agents, one Redis and one PostgreSQL store: the engine that holds the singleton duties is
killed (SIGKILL) in the middle of a workflow, and the workflow succeeds with no step run twice.

The workflow alternates between the roles web and db, so that status events and dispatches keep flowing
through both engines' ingesters; one step holds until the test opens its gate, and the kill lands while it
runs. A step after the kill fails once and is retried after a backoff: publishing a due retry is one of the
singleton duties, so it goes out only if the surviving engine took them over. Every step appends its name
to a log, which says how many times each ran.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from common.localredis import LocalRedis, free_port
from tests.integration.conftest import Cluster, desired_state, postgres_database, wait_for

pytestmark = pytest.mark.chaos

LAYERS = 5
GATED = "web-2"  # the step the kill lands on
FLAKY = "db-3"  # fails its first attempt, after the kill


@dataclass
class Engines:
    cluster: Cluster
    urls: dict[str, str]  # engine id -> its API


@pytest.fixture
def engines(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Engines]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    with postgres_database() as store_url:
        cluster = Cluster(redis_server.url, tmp_path, store_url)
        cluster.env["CONVERGE_DUTIES_TTL_S"] = "3"
        cluster.start_engine("engine-a", CONVERGE_ENGINE_ID="a")
        port = free_port()
        cluster.start_engine(
            "engine-b",
            CONVERGE_ENGINE_ID="b",
            CONVERGE_API_BIND=f"127.0.0.1:{port}",
            CONVERGE_URL=f"http://127.0.0.1:{port}",
        )
        try:
            yield Engines(cluster, {"a": cluster.env["CONVERGE_URL"], "b": f"http://127.0.0.1:{port}"})
        finally:
            cluster.stop_all()
            cluster.redis.close()


def health(url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{url}/v1/health", timeout=10).json()
    return document


def estate(tmp_path: Path) -> str:
    """LAYERS layers of a web and a db step, each layer after the one before."""
    runs, gate = tmp_path / "runs.log", tmp_path / "gate"
    resources = []
    for layer in range(LAYERS):
        for role in ("web", "db"):
            name = f"{role}-{layer}"
            done = tmp_path / f"{name}.done"
            body = f"echo {name} >> {runs}"
            if name == GATED:
                body += f"; for i in $(seq 1200); do [ -e {gate} ] && break; sleep 0.1; done"
            if name == FLAKY:
                first = tmp_path / "flaky.first"
                body += f"; if [ ! -e {first} ]; then touch {first}; exit 1; fi"
            after = f", depends_on: [command/web-{layer - 1}, command/db-{layer - 1}]" if layer else ""
            retry = ", retry: {attempts: 2, backoff_s: 2}" if name == FLAKY else ""
            resources.append(
                f"  - {{kind: command, name: {name}, role: {role}{after}{retry}, "
                f"spec: {{run: '{body}; touch {done}', creates: {done}}}}}\n"
            )
    return desired_state("engines", "".join(resources))


def test_killing_the_engine_that_holds_the_singleton_duties_loses_nothing_and_runs_no_step_twice(
    engines: Engines, tmp_path: Path
) -> None:
    cluster, urls = engines.cluster, engines.urls
    cluster.start_agent("web", agent_id="web-1")
    cluster.start_agent("db", agent_id="db-1")
    duties = health(urls["a"])["duties"]
    assert duties["holder"] in ("a", "b") and duties["engines"] == ["a", "b"]
    holder = duties["holder"]
    survivor = "b" if holder == "a" else "a"
    assert health(urls[survivor])["duties"]["leading"] is False

    applied = cluster.cli("apply", str(cluster.write("engines.yaml", estate(tmp_path))), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]
    runs = tmp_path / "runs.log"
    wait_for(lambda: runs.exists() and GATED in runs.read_text().split(), 60, f"{GATED} to start")

    cluster.stop(f"engine-{holder}", signal.SIGKILL)
    cluster.env["CONVERGE_URL"] = urls[survivor]
    wait_for(lambda: health(urls[survivor])["duties"]["leading"], 30, "the survivor to take the duties")
    (tmp_path / "gate").touch()

    try:
        done = wait_for(
            lambda: (view := cluster.show(workflow_id))["state"] in ("succeeded", "failed") and view,
            120,
            "the workflow to end",
        )
    except AssertionError:
        view = cluster.show(workflow_id)
        raise AssertionError(
            [(s["resource"], s["state"], s["attempt"], s["message"], s["error"]) for s in view["steps"]]
        ) from None
    assert done["state"] == "succeeded", [(s["resource"], s["state"], s["error"]) for s in done["steps"]]
    ran = Counter(runs.read_text().split())
    expected = {f"{role}-{layer}": 1 for layer in range(LAYERS) for role in ("web", "db")}
    expected[FLAKY] = 2  # its first attempt failed on purpose; the retry is its second
    assert ran == expected
    attempts = {s["resource"]: s["attempt"] for s in done["steps"]}
    assert attempts == {f"command/{name}": count for name, count in expected.items()}

    after = health(urls[survivor])["duties"]
    assert after["holder"] == survivor and after["engines"] == [survivor]
    log = (cluster.logs / f"engine-{survivor}.log").read_text()
    assert f"this engine ({survivor}) holds the singleton duties now" in log

"""`GET /metrics` scraped during and after a workflow run by a real agent: every figure matches the store and
Redis, and a scrape needs a token like every other read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from common import names
from tests.integration.conftest import Cluster, desired_state, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(cluster: Cluster, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else cluster.headers
    response = httpx.get(cluster.env["CONVERGE_URL"] + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labelled(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def store_rows(cluster: Cluster, query: str) -> list[Any]:
    path = cluster.env["CONVERGE_STORE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


def assert_matches_store(cluster: Cluster, samples: Samples) -> None:
    for state, kind, n in store_rows(
        cluster, "SELECT state, kind, count(*) FROM converge_steps GROUP BY 1, 2"
    ):
        assert labelled(samples, "converge_steps", state=state, kind=kind) == n, (state, kind)
    total = sum(v for (name, _), v in samples.items() if name == "converge_steps")
    assert total == store_rows(cluster, "SELECT count(*) FROM converge_steps")[0][0]
    for state, n in store_rows(cluster, "SELECT state, count(*) FROM converge_workflows GROUP BY 1"):
        assert labelled(samples, "converge_workflows", state=state) == n, state
    timed = store_rows(
        cluster,
        "SELECT kind, state, count(*) FROM converge_steps "
        "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL GROUP BY 1, 2",
    )
    for kind, state, n in timed:
        assert labelled(samples, "converge_step_duration_seconds_count", kind=kind, state=state) == n
        assert (
            labelled(samples, "converge_step_duration_seconds_bucket", kind=kind, state=state, le="+Inf") == n
        )


def test_metrics_match_the_store_during_and_after_a_workflow(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("web", agent_id="web-1")
    gate = tmp_path / "gate"
    desired = cluster.write(
        "metrics.yaml",
        desired_state(
            "metrics",
            f"""  - kind: file
    name: page
    role: web
    spec: {{path: {tmp_path}/page, content: "x"}}
  - kind: command
    name: broken
    role: web
    retry: {{attempts: 1}}
    spec: {{run: "exit 3", creates: {tmp_path}/never}}
  - kind: wait_for
    name: gate
    role: web
    spec: {{path: {gate}, within_s: 60}}
  - kind: file
    name: nobody
    role: nobody
    spec: {{path: {tmp_path}/nobody, content: "x"}}
""",
        ),
    )
    applied = cluster.cli("apply", str(desired), "--json")
    assert applied.returncode == 0, applied.stderr
    workflow_id = json.loads(applied.stdout)["workflow"]["id"]

    # During: the gate waits, the step of a role without agents waits on its queue.
    def running() -> Samples | None:
        samples = scrape(cluster)
        ready = labelled(samples, "converge_steps", state="started", kind="wait_for") == 1 and (
            labelled(samples, "converge_steps", state="failed", kind="command") == 1
        )
        return samples if ready else None

    during = wait_for(running, 60, "the gate to run and the broken command to fail")
    assert_matches_store(cluster, during)
    assert labelled(during, "converge_workflows", state="running") == 1
    assert labelled(during, "converge_queue_depth", role="nobody", queue=names.role_queue("nobody")) == 1
    assert labelled(during, "converge_agents", state="active") == 1
    epoch = int(cluster.redis.get(names.epoch_key("web")) or 0)
    assert epoch >= 1
    assert labelled(during, "converge_leader_changes_total", role="web") == epoch
    assert labelled(during, "converge_ingest_backlog") >= 0

    # After: the workflow ends failed (one failed step), the step without an agent is cancelled.
    gate.touch()
    wait_for(
        lambda: labelled(scrape(cluster), "converge_steps", state="succeeded", kind="wait_for") == 1,
        60,
        "the gate to open",
    )
    cancelled = cluster.cli("workflows", "cancel", workflow_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: cluster.show(workflow_id)["state"] in ("failed", "cancelled"), 60, "the workflow to end")

    def recorded() -> Samples | None:
        samples = scrape(cluster)
        return samples if labelled(samples, "converge_ingest_backlog") == 0 else None

    after = wait_for(recorded, 30, "every status report to be recorded")
    assert_matches_store(cluster, after)
    assert labelled(after, "converge_workflows", state="running") == 0
    assert labelled(after, "converge_ingest_lag_seconds") == 0
    assert labelled(after, "converge_step_duration_seconds_count", kind="wait_for", state="succeeded") == 1
    # The gate took at least as long as the scrapes that waited for it: never in the first bucket.
    assert (
        labelled(
            after, "converge_step_duration_seconds_bucket", kind="wait_for", state="succeeded", le="0.01"
        )
        == 0
    )


def test_metrics_need_a_token_and_a_viewer_may_scrape(cluster: Cluster) -> None:
    url = cluster.env["CONVERGE_URL"] + "/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    made = cluster.cli("tokens", "create", "--name", "prometheus", "--role", "viewer", "--json")
    assert made.returncode == 0, made.stderr
    samples = scrape(cluster, json.loads(made.stdout)["token"])
    assert labelled(samples, "converge_workflows", state="running") == 0
    assert labelled(samples, "converge_ingest_backlog") == 0

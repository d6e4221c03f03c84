"""The lists operators read, on a real engine and agent: `--state succeeded`, where `list` says the
succeeded workflows went, ids given by a unique prefix, and a prune that asks before it empties history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from common.localredis import LocalRedis
from common.store import open_store
from tests.integration.conftest import Cluster, desired_state, wait_for
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One engine and one agent of role `work` for the module; each test makes the workflows it reads."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    workdir = tmp_path_factory.mktemp("lists")
    c = Cluster(redis_server.url, workdir, f"sqlite:///{workdir / 'converge.db'}")
    c.start_engine()
    c.start_agent("work", agent_id="work-1")
    yield c
    c.stop_all()
    c.redis.close()


def succeeded(cluster: Cluster) -> str:
    """Apply a new one-command desired state and wait: the id of its succeeded workflow."""
    name = f"echo-{uuid.uuid4().hex[:8]}"
    spec = f'{{run: "echo said-{name} && touch {cluster.workdir}/{name}", creates: {cluster.workdir}/{name}}}'
    path = cluster.write(
        f"{name}.yaml", desired_state(name, f"  - {{kind: command, name: c, role: work, spec: {spec}}}\n")
    )
    result = cluster.apply(path)
    assert result["exit_code"] == 0, [(s["error"], s["message"]) for s in result["workflow"]["steps"]]
    return str(result["workflow"]["id"])


def cli_json(cluster: Cluster, *args: str) -> Any:
    result = cluster.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_succeeded_workflow_is_listed_under_state_succeeded_and_list_says_where_it_went(
    cluster: Cluster,
) -> None:
    workflow_id = succeeded(cluster)

    assert workflow_id in [w["id"] for w in cli_json(cluster, "workflows", "list", "--state", "succeeded")]
    assert workflow_id not in [w["id"] for w in cli_json(cluster, "workflows", "list")]
    listed = cluster.cli("workflows", "list")
    assert listed.returncode == 0, listed.stderr
    count = len(cli_json(cluster, "workflows", "history"))
    assert f"succeeded workflows are in `converge workflows history` ({count} there)" in listed.stdout


def test_show_and_logs_take_a_unique_prefix_of_the_id(cluster: Cluster) -> None:
    workflow_id = succeeded(cluster)
    prefix = workflow_id[:8]

    shown = cli_json(cluster, "workflows", "show", prefix)
    (step,) = cli_json(cluster, "workflows", "logs", prefix, "command/c")

    assert shown["id"] == workflow_id and shown["state"] == "succeeded"
    assert any(text.startswith("said-") for _, _, text in step["output"]["lines"])


def test_cancel_and_retry_take_a_unique_prefix_of_the_id(cluster: Cluster) -> None:
    name = f"wait-{uuid.uuid4().hex[:8]}"
    path = cluster.write(
        f"{name}.yaml",
        desired_state(name, "  - {kind: wait_for, name: w, role: work, spec: {seconds: 60}}\n"),
    )
    workflow_id = cli_json(cluster, "apply", str(path))["workflow"]["id"]
    prefix = workflow_id[:6]
    wait_for(lambda: cluster.show(workflow_id)["steps"][0]["state"] == "started", 30, "the step to start")

    cancelled = cluster.cli("workflows", "cancel", prefix, "--wait", "--timeout", "30", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["workflow"]["id"] == workflow_id
    retried = cli_json(cluster, "workflows", "retry", prefix)
    assert retried["workflow"]["id"] == workflow_id and retried["workflow"]["state"] == "running"
    assert cluster.cli("workflows", "cancel", prefix, "--wait", "--timeout", "30").returncode == 0


def test_an_ambiguous_prefix_is_bad_input_naming_the_candidates_and_an_unknown_one_is_not_found(
    cluster: Cluster,
) -> None:
    # Two workflows whose ids share a prefix, stored as the engine stores them, then cancelled: inert.
    store = open_store(cluster.env["CONVERGE_STORE_URL"])
    try:
        for workflow_id in ("beef0000aaaa0001", "beef0000bbbb0002"):
            source = desired_state(
                workflow_id, "  - {kind: wait_for, name: w, role: nobody, spec: {seconds: 1}}\n"
            )
            store.create_workflow(plan(load_text(source, "x.yaml", default_registry()), workflow_id), source)
            store.cancel(workflow_id)
    finally:
        store.close()

    ambiguous = cluster.cli("workflows", "show", "beef0000")
    as_json = cluster.cli("workflows", "logs", "beef", "--json")
    unique = cli_json(cluster, "workflows", "show", "beef0000b")
    unknown = cluster.cli("workflows", "show", "beef0000c")

    assert ambiguous.returncode == 2
    assert "beef0000aaaa0001, beef0000bbbb0002" in ambiguous.stderr
    assert "give more characters" in ambiguous.stderr
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["exit_code"] == 2
    assert unique["id"] == "beef0000bbbb0002"
    assert unknown.returncode == 2 and "no workflow beef0000c" in unknown.stderr


def test_pruning_all_of_history_needs_yes_without_a_terminal_and_the_api_needs_all(cluster: Cluster) -> None:
    succeeded(cluster)
    before = len(cli_json(cluster, "workflows", "history"))

    refused = cluster.cli("workflows", "prune", "--older-than-days", "0", stdin="")
    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], headers=cluster.headers) as http:
        by_api = http.post("/v1/history/prune", params={"older_than_days": 0})
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert by_api.status_code == 422 and f"all {before} workflows" in by_api.json()["error"]
    assert len(cli_json(cluster, "workflows", "history")) == before, "nothing was deleted"

    pruned = cli_json(cluster, "workflows", "prune", "--older-than-days", "0", "--yes")
    assert pruned == {"pruned": before}
    assert cli_json(cluster, "workflows", "history") == []

"""Generated bodies and query values thrown at a real engine: every answer is below 500 and says what is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

ROUTES = [
    ("POST", "/v1/workflows"),
    ("POST", "/v1/plan"),
    ("GET", "/v1/workflows"),
    ("GET", "/v1/workflows/{id}"),
    ("POST", "/v1/workflows/{id}/cancel"),
    ("POST", "/v1/workflows/{id}/retry"),
    ("GET", "/v1/history/count"),
    ("POST", "/v1/history/prune"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/retry"),
    ("POST", "/v1/dead-letters/purge"),
    ("DELETE", "/v1/agents/{id}"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
submissions = st.fixed_dictionaries(
    {"source": st.text(max_size=400) | json_values, "filename": st.text(max_size=30) | json_values}
)
bodies = st.one_of(
    json_values.map(json.dumps),
    submissions.map(json.dumps),
    st.fixed_dictionaries({"ids": json_values}).map(json.dumps),
    st.binary(max_size=200),
).map(lambda body: body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
queries = st.dictionaries(
    st.sampled_from(["state", "limit", "older_than_days", "all"]),
    st.text(max_size=12) | st.sampled_from(["-1", "nan", "inf", "1e400", "0", "running"]),
    max_size=3,
)
ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/?#%."),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def engine(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One real engine for the whole module (no agent: nothing generated can be planned or run)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    workdir = tmp_path_factory.mktemp("fuzz")
    cluster = Cluster(redis_server.url, workdir, f"sqlite:///{workdir / 'converge.db'}")
    cluster.start_engine()
    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], headers=cluster.headers, timeout=60) as http:
        yield http
    cluster.stop_all()
    cluster.redis.close()


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=bodies, query=queries, target=ids)
def test_every_generated_request_gets_an_answer_below_500_with_a_message(
    engine: httpx.Client, route: tuple[str, str], body: bytes, query: dict[str, str], target: str
) -> None:
    method, path = route
    headers = {"content-type": "application/json"}

    answer = engine.request(method, path.format(id=target), content=body, params=query, headers=headers)

    assert answer.status_code < 500, (method, path, body[:200], query, answer.text[:300])
    if answer.status_code >= 400:
        document: dict[str, Any] = answer.json()
        assert isinstance(document.get("error"), str) and document["error"], answer.text[:300]

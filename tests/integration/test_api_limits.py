"""Big bodies cost the engine nothing it cannot afford: refused by size, and never blocking other work."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Cluster, desired_state

pytestmark = pytest.mark.integration


def huge_estate(resources: int) -> str:
    lines = [
        f'  - {{kind: file, name: f{i}, role: bulk, spec: {{path: /tmp/converge-bulk/f{i}, content: "x"}}}}'
        for i in range(resources)
    ]
    return desired_state("huge", "\n".join(lines) + "\n")


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(cluster: Cluster) -> None:
    big = json.dumps({"source": "x" * 6_000_000, "filename": "big.yaml"}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the engine counts as it reads
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], headers=cluster.headers, timeout=60) as http:
        declared = http.post("/v1/workflows", content=big, headers={"content-type": "application/json"})
        streamed = http.post("/v1/plan", content=chunks(), headers={"content-type": "application/json"})

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert "CONVERGE_MAX_BODY_BYTES" in answer.json()["error"]
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []


def test_a_small_apply_completes_while_200k_resource_bodies_are_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.stop("engine")
    cluster.env["CONVERGE_MAX_BODY_BYTES"] = str(64 * 1024 * 1024)  # let them in: the parser must refuse them
    cluster.start_engine()
    cluster.start_agent("web", agent_id="web-1")
    body = json.dumps({"source": huge_estate(200_000), "filename": "huge.yaml"}).encode()
    small = cluster.write(
        "small.yaml",
        desired_state(
            "small",
            f"  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/small, content: ok}}}}\n",
        ),
    )

    def post_huge() -> httpx.Response:
        with httpx.Client(base_url=cluster.env["CONVERGE_URL"], headers=cluster.headers, timeout=300) as http:
            return http.post("/v1/workflows", content=body, headers={"content-type": "application/json"})

    with ThreadPoolExecutor(max_workers=3) as pool:
        huge = [pool.submit(post_huge) for _ in range(3)]
        started = time.monotonic()
        applied = cluster.apply(small)
        small_took_s = time.monotonic() - started
        answers = [f.result() for f in huge]

    assert applied["exit_code"] == 0, applied
    assert (tmp_path / "small").read_text() == "ok"
    assert small_took_s < 30, small_took_s
    assert {a.status_code for a in answers} == {422}
    assert all("split it into several files" in a.json()["error"] for a in answers)
    assert [w["name"] for w in json.loads(cluster.cli("workflows", "history", "--json").stdout)] == ["small"]

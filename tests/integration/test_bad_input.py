"""Every bad desired-state file: exit code 2, a message naming file, line and field, and nothing stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Cluster

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: bad}\nresources:\n"

CASES: dict[str, tuple[bytes, int | None, str, str]] = {
    # case: (file content, expected line, expected field, expected words in the message)
    "unknown_kind": (
        HEADER.encode() + b"  - kind: fiel\n    name: a\n    role: web\n    spec: {path: /tmp/a}\n",
        5,
        "resources[0].kind",
        "fiel",
    ),
    "missing_spec_field": (
        HEADER.encode() + b"  - kind: file\n    name: a\n    role: web\n    spec: {mode: '0644'}\n",
        8,
        "resources[0].spec.path",
        "path",
    ),
    "wrong_typed_spec_field": (
        HEADER.encode() + b"  - kind: wait_for\n    name: a\n    role: web\n    spec:\n      seconds: soon\n",
        9,
        "resources[0].spec.seconds",
        "soon",
    ),
    "duplicate_resource": (
        HEADER.encode()
        + b"  - {kind: directory, name: a, role: web, spec: {path: /tmp/a}}\n"
        + b"  - {kind: directory, name: a, role: web, spec: {path: /tmp/b}}\n",
        6,
        "resources[1]",
        "directory/a",
    ),
    "conflicting_resources": (
        HEADER.encode()
        + b"  - {kind: directory, name: a, role: web, spec: {path: /tmp/a}}\n"
        + b"  - {kind: file, name: b, role: web, spec: {path: /tmp//a/, content: x}}\n",
        6,
        "resources[1]",
        "file/b and directory/a (",
    ),
    "missing_dependency": (
        HEADER.encode()
        + b"  - {kind: directory, name: a, role: web, depends_on: [file/ghost], spec: {path: /tmp/a}}\n",
        5,
        "resources[0].depends_on[0]",
        "file/ghost",
    ),
    "dependency_cycle": (
        HEADER.encode()
        + b"  - {kind: directory, name: a, role: web, depends_on: [directory/b], spec: {path: /tmp/a}}\n"
        + b"  - {kind: directory, name: b, role: web, depends_on: [directory/a], spec: {path: /tmp/b}}\n",
        6,
        "resources[1].depends_on[0]",
        "directory/a -> directory/b -> directory/a",
    ),
    "yaml_syntax_error": (HEADER.encode() + b"  - kind: file\n    name: a: b\n", 6, "", "YAML"),
    "empty_file": (b"", None, "", "empty"),
    "not_utf8": (HEADER.encode() + b"  - kind: file\n    name: caf\xe9\n", 6, "", "UTF-8"),
    "missing_role": (
        HEADER.encode() + b"  - kind: directory\n    name: a\n    spec: {path: /tmp/a}\n",
        5,
        "resources[0].role",
        "role",
    ),
}


def stored_rows(cluster: Cluster) -> int:
    db = cluster.env["CONVERGE_STORE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("converge_workflows", "converge_steps")
        )


@pytest.fixture
def bad_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, int | None, str, str]:
    content, line, field, words = CASES[request.param]
    path = tmp_path / f"{request.param}.yaml"
    path.write_bytes(content)
    return path, line, field, words


@pytest.mark.parametrize("bad_file", sorted(CASES), indirect=True)
def test_bad_input_exits_2_names_file_line_and_field_and_stores_nothing(
    cluster: Cluster, bad_file: tuple[Path, int | None, str, str]
) -> None:
    path, line, field, words = bad_file

    for command in (["apply", str(path)], ["apply", str(path), "--wait"], ["plan", str(path)]):
        result = cluster.cli(*command)

        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        message = " ".join(result.stderr.split())
        location = f"{path}:{line}" if line else str(path)
        assert location in message, message
        assert field in message, message
        assert words in message, message
    # under --json the same error is one JSON document on stdout: error, exit code, and each problem
    as_json = cluster.cli("apply", str(path), "--json")
    assert as_json.returncode == 2, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["exit_code"] == 2 and words in document["error"], document
    assert any(p["field"] == field and (line is None or p["line"] == line) for p in document["problems"]), (
        document
    )
    assert stored_rows(cluster) == 0
    assert json.loads(cluster.cli("workflows", "list", "--json").stdout) == []


@pytest.mark.parametrize("case", ["unknown_kind", "dependency_cycle", "conflicting_resources", "not_utf8"])
def test_the_engine_refuses_bad_input_sent_past_the_cli(cluster: Cluster, case: str) -> None:
    content = CASES[case][0].decode("utf-8", errors="replace") if case != "not_utf8" else "\ufffd: [\n"

    response = httpx.post(
        cluster.env["CONVERGE_URL"] + "/v1/workflows",
        json={"source": content, "filename": "sent.yaml"},
        headers=cluster.headers,
    )

    assert response.status_code == 422
    assert response.json()["problems"][0]["file"] == "sent.yaml"
    assert stored_rows(cluster) == 0

"""Extensions on real agents: a replaced `file` apply, the execution policy, broken files, the relaxed
capability test, and a kind from an installed package that the engine plans and an agent applies."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.localredis import LocalRedis
from tests.integration.conftest import Cluster, desired_state, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

SHOUTING_FILES = """
def register(ext):
    def apply(spec, change, ctx):
        with open(spec.path, "w", encoding="utf-8") as f:
            f.write(spec.content.upper())
        with open(spec.path + ".by-extension", "w", encoding="utf-8") as f:
            f.write(f"{ctx.agent_id} {change.action}\\n")

    ext.replace("file", "apply", apply)
"""


def extensions_dir(cluster: Cluster) -> Path:
    """The default folder: `extensions` under the agent's state folder."""
    folder = Path(cluster.env["CONVERGE_AGENT_STATE_DIR"]) / "extensions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def put(folder: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def one_file(cluster: Cluster, target: Path, content: str = "hello\n") -> Path:
    spec = json.dumps({"path": str(target), "content": content})
    return cluster.write(
        "one.yaml", desired_state("one", f"  - kind: file\n    name: f\n    role: web\n    spec: {spec}\n")
    )


def agent_view(cluster: Cluster, agent_id: str) -> dict[str, Any]:
    result = cluster.cli("agents", "list", "--json")
    assert result.returncode == 0, result.stderr
    return next(a for a in json.loads(result.stdout) if a["id"] == agent_id)


def test_an_extension_replaces_the_file_apply_of_a_real_agent(cluster: Cluster, tmp_path: Path) -> None:
    put(extensions_dir(cluster), "shout.py", SHOUTING_FILES)
    cluster.start_agent("web", agent_id="web-1")
    target = tmp_path / "greeting.txt"

    workflow = cluster.apply(one_file(cluster, target))

    assert workflow["exit_code"] == 0, workflow
    assert target.read_text() == "HELLO\n"  # the extension's apply ran, not the built-in
    assert Path(f"{target}.by-extension").read_text() == "web-1 create\n"
    assert agent_view(cluster, "web-1")["extension_problems"] == []
    listed = json.loads(cluster.agent_cli("extensions", "--json").stdout)
    assert [(Path(f["path"]).name, f["state"], f["overrides"]) for f in listed["files"]] == [
        ("shout.py", "loaded", ["replaces file.apply"])
    ]
    line = "shout.py: replaces file.apply"
    wait_for(lambda: line in (cluster.logs / "agent-web-1.log").read_text(), 10, "the extension in the log")


def test_a_group_writable_extension_is_refused_when_restricted_and_loaded_when_unrestricted(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = put(extensions_dir(cluster), "shout.py", SHOUTING_FILES, mode=0o664)
    cluster.start_agent("web", agent_id="web-1")
    target = tmp_path / "greeting.txt"

    restricted = cluster.apply(one_file(cluster, target))

    assert restricted["exit_code"] == 0
    assert target.read_text() == "hello\n"  # the built-in wrote it
    problems = agent_view(cluster, "web-1")["extension_problems"]
    assert len(problems) == 1 and problems[0].startswith(
        f"{path}: refused: refused by execution policy restricted"
    )
    assert "writable by group (mode 0664)" in problems[0]
    wait_for(
        lambda: str(path) in (cluster.logs / "agent-web-1.log").read_text(), 10, "the refusal in the log"
    )
    table = cluster.cli("agents", "list")
    assert "extension not loaded" in table.stdout and "shout.py" in table.stdout.replace("\n", "")

    cluster.stop("agent-web-1")
    cluster.env["CONVERGE_AGENT_EXECUTION_POLICY"] = "unrestricted"
    cluster.start_agent("web", agent_id="web-1")
    target.unlink()
    unrestricted = cluster.apply(one_file(cluster, target))

    assert unrestricted["exit_code"] == 0
    assert target.read_text() == "HELLO\n"
    assert agent_view(cluster, "web-1")["extension_problems"] == []


def test_broken_extensions_leave_the_agent_on_the_built_ins_and_are_named(
    cluster: Cluster, tmp_path: Path
) -> None:
    folder = extensions_dir(cluster)
    put(folder, "syntax.py", "def register(ext)\n    pass\n")
    put(folder, "raises.py", "raise RuntimeError('cannot reach the CMDB')\n")
    cluster.start_agent("web", agent_id="web-1")
    target = tmp_path / "greeting.txt"

    workflow = cluster.apply(one_file(cluster, target))

    assert workflow["exit_code"] == 0
    assert target.read_text() == "hello\n"
    problems = agent_view(cluster, "web-1")["extension_problems"]
    assert problems == [
        f"{folder / 'raises.py'}: failed: raised RuntimeError: cannot reach the CMDB",
        f"{folder / 'syntax.py'}: failed: syntax error at line 1: expected ':'",
    ]
    log = wait_for(
        lambda: (text := (cluster.logs / "agent-web-1.log").read_text()) and "syntax.py" in text and text,
        10,
        "the broken files in the agent's log",
    )
    assert "raises.py: failed: raised RuntimeError" in log and "goes on with the built-ins" in log
    assert "Traceback" not in log


def test_the_example_extension_relaxes_the_capability_test(cluster: Cluster, tmp_path: Path) -> None:
    expected = tmp_path / "expected.xml"
    expected.write_text(
        '<capabilities><applications><application name="nginx" version="1.22"/></applications>'
        '<updates><update id="KB1"/></updates></capabilities>'
    )
    actual = tmp_path / "actual.json"
    actual.write_text(json.dumps({"applications": {"nginx": "1.22"}, "updates": ["KB1", "KB2"]}))
    env = {"CONVERGE_AGENT_CAPABILITIES_FILE": str(actual)}

    strict = cluster.agent_cli("capabilities", "--compare", str(expected), env=env)
    shutil.copy(ROOT / "examples" / "extensions" / "relax_capabilities.py", extensions_dir(cluster))
    relaxed = cluster.agent_cli("capabilities", "--compare", str(expected), "--json", env=env)

    assert (strict.returncode, strict.stdout) == (1, "update KB2 is not expected\n")
    assert f"differs from {expected}" in strict.stderr
    assert (relaxed.returncode, json.loads(relaxed.stdout)) == (0, {"differences": []})


def test_the_host_capability_document_is_xml_by_default(cluster: Cluster) -> None:
    result = cluster.agent_cli("capabilities")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<?xml") and "<capabilities" in result.stdout


# A kind from an installed package ----------------------------------------------------------------------


def install_line_package(site: Path) -> None:
    """A real installed distribution (a .dist-info with entry_points.txt) that importlib.metadata finds."""
    shutil.copytree(ROOT / "examples" / "kinds" / "converge-line" / "converge_line", site / "converge_line")
    info = site / "converge_line-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: converge-line\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[converge.providers]\nline = converge_line:LineProvider\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def package_cluster(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Cluster]:
    """As `cluster`, with the `line` package on the path of the engine, the CLI and the agents."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    site = tmp_path / "site"
    site.mkdir()
    install_line_package(site)
    c = Cluster(redis_server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    c.env["PYTHONPATH"] = f"{site}:{ROOT}"
    c.start_engine()
    yield c
    c.stop_all()
    c.redis.close()


def test_a_kind_from_an_installed_package_is_planned_by_the_engine_and_applied_by_an_agent(
    package_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = package_cluster
    cluster.start_agent("web", agent_id="web-1")
    target = tmp_path / "hosts.allow"
    target.write_text("sshd: 10.0.0.0/8\n")
    spec = json.dumps({"path": str(target), "line": "sshd: 192.168.0.0/16"})
    desired = cluster.write(
        "line.yaml", desired_state("ssh", f"  - kind: line\n    name: lan\n    role: web\n    spec: {spec}\n")
    )
    bad = cluster.write(
        "bad.yaml",
        desired_state("ssh", "  - kind: line\n    name: lan\n    role: web\n    spec: {path: etc}\n"),
    )

    plan = cluster.cli("plan", str(desired), "--json")
    refused = cluster.cli("apply", str(bad))
    first = cluster.apply(desired)
    second = cluster.apply(desired)

    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"][0]["action"] == "update"
    assert refused.returncode == 2 and "line" in refused.stderr
    assert first["exit_code"] == 0, first
    assert target.read_text() == "sshd: 10.0.0.0/8\nsshd: 192.168.0.0/16\n"
    steps = first["workflow"]["steps"]
    assert [(s["resource"], s["state"], s["changed"], s["agent"]) for s in steps] == [
        ("line/lan", "succeeded", True, "web-1")
    ]
    assert second["workflow"]["steps"][0]["changed"] is False

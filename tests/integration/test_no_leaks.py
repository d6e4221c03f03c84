"""No broker or store password shows anywhere but where it is used.

A password-protected private Redis (and, where CONVERGE_TEST_POSTGRES_URL is set, a store URL with a
password), an engine and an agent given its broker URL with `--broker-url`. The test runs a workflow, looks
at Flower, stops Redis, calls every API route, starts an engine and an agent that cannot connect, and runs
`converge-agent config`; then it scans every answer, every output, every log and the command line of every
process of the cluster for the passwords.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from common.localredis import LocalRedis, free_port
from tests.integration.conftest import PG_URL, Cluster, desired_state, wait_for

BROKER_PASSWORD = "S3cretPass"
STORE_PASSWORD = "StorePass"
SECRETS = (BROKER_PASSWORD, STORE_PASSWORD)
FLOWER_AUTH = ("ops", "flower-pass")
AGENT = [sys.executable, "-m", "agents"]
ROUTES = [
    ("GET", "/v1/agents"),
    ("DELETE", "/v1/agents/web-1"),
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows"),
    ("GET", "/v1/workflows/nope"),
    ("POST", "/v1/workflows/nope/cancel"),
    ("POST", "/v1/workflows/nope/retry"),
    ("GET", "/v1/history"),
    ("GET", "/v1/history/count"),
    ("POST", "/v1/history/prune"),
    ("POST", "/v1/plan"),
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/retry"),
    ("POST", "/v1/dead-letters/purge"),
]


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis", password=BROKER_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PostgreSQL with a password in the URL when there is one to test on (its trust auth ignores it)."""
    if not PG_URL:
        return f"sqlite:///{tmp_path / 'converge.db'}"
    url = make_url(request.getfixturevalue("postgres_url"))
    url = url.set(username=url.username or getpass.getuser(), password=STORE_PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def cluster(locked_redis: LocalRedis, store_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(locked_redis.url, tmp_path, store_url)
    c.start_engine()
    yield c
    c.stop_all()
    c.redis.close()


def test_no_password_shows_in_answers_outputs_logs_or_command_lines(
    cluster: Cluster, locked_redis: LocalRedis, tmp_path: Path
) -> None:
    seen: dict[str, str] = {}
    agent_env = {k: v for k, v in cluster.env.items() if k != "CONVERGE_BROKER_URL"}
    spawn(
        cluster,
        "agent-web-1",
        [*AGENT, "run", "--role", "web", "--id", "web-1", "--broker-url", locked_redis.url],
        agent_env,
    )
    wait_for(lambda: cluster.agent_state("web-1") == "active", 60, "the agent given --broker-url")
    desired = cluster.write(
        "leaks.yaml",
        desired_state(
            "leaks", f"  - {{kind: file, name: f, role: web, spec: {{path: {tmp_path}/f, content: hi}}}}\n"
        ),
    )
    flower = start_flower(cluster)
    workflow = cluster.apply(desired)
    assert workflow["workflow"]["state"] == "succeeded", workflow
    seen["apply"] = json.dumps(workflow)
    seen |= flower_pages(flower)
    seen |= agent_config_outputs(cluster, locked_redis.url)
    seen |= start_errors(cluster, locked_redis.url.replace(BROKER_PASSWORD, "WrongPass"), "wrong password")
    command_lines = cluster_command_lines(cluster, locked_redis)
    assert len(command_lines) > 3, command_lines  # the engine, the agent and its pool, Flower, Redis
    seen |= command_lines

    locked_redis.stop()
    answers = api_answers(cluster, desired.read_text())
    assert answers["GET /v1/agents"][0] == 503
    assert "redis://:***@" in answers["GET /v1/agents"][1]
    seen |= {route: body for route, (_, body) in answers.items()}
    seen |= cli_outputs(cluster, ("agents", "list"), ("apply", str(desired)), ("plan", str(desired)))
    seen |= start_errors(cluster, locked_redis.url, "Redis down")
    seen |= cluster_command_lines(cluster, locked_redis)

    cluster.stop_all()
    logs = [*cluster.logs.rglob("*"), locked_redis.workdir / "redis.log"]
    seen |= {str(p): p.read_text(errors="replace") for p in logs if p.is_file()}
    assert not {label: text for label, text in seen.items() if any(s in text for s in SECRETS)}


def spawn(cluster: Cluster, name: str, argv: list[str], env: dict[str, str]) -> None:
    """A child of the cluster, logging to its log folder; stopped with it."""
    with (cluster.logs / f"{name}.log").open("ab") as log:
        cluster.procs[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_flower(cluster: Cluster) -> httpx.Client:
    """Flower on the cluster's broker, run as the README says; a client of its pages (with its login)."""
    port = free_port()
    celery = str(Path(sys.executable).parent / "celery")
    argv = [
        celery,
        "-A",
        "common.flower_app",
        "flower",
        f"--port={port}",
        "--basic-auth={}:{}".format(*FLOWER_AUTH),
    ]
    spawn(cluster, "flower", argv, cluster.env)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=FLOWER_AUTH, timeout=10)


def flower_pages(http: httpx.Client, agent_id: str = "web-1") -> dict[str, str]:
    """Flower's pages on the broker, the workers (their configuration too) and every task it saw."""

    def page(path: str, **params: str) -> str | None:
        try:
            answer = http.get(path, params=params)
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None

    def worker_seen() -> str | None:
        answer = page("/api/workers", refresh="1")
        return answer if answer is not None and f"{agent_id}@" in answer else None

    with http:
        pages = {"flower /api/workers": wait_for(worker_seen, 60, "Flower to see the agent")}
        worker = next(w for w in json.loads(pages["flower /api/workers"]) if w.startswith(f"{agent_id}@"))
        tasks = page("/api/tasks") or "{}"
        pages["flower /api/tasks"] = tasks
        paths = ["/broker", "/workers", "/tasks", f"/worker/{worker}"]
        for path in paths + [f"/task/{task_id}" for task_id in json.loads(tasks)]:
            answer = http.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
            pages[f"flower {path}"] = answer.text
    return pages


def agent_config_outputs(cluster: Cluster, broker_url: str) -> dict[str, str]:
    """`converge-agent config` set from the command line, shown from the file and from the environment."""
    no_env = {k: v for k, v in cluster.env.items() if k != "CONVERGE_BROKER_URL"}
    runs = {
        "config set": ([*AGENT, "config", "set", f"broker_url={broker_url}"], cluster.env),
        "config show (file)": ([*AGENT, "config", "show"], no_env),
        "config show --json (file)": ([*AGENT, "config", "show", "--json"], no_env),
        "config show (env)": ([*AGENT, "config", "show"], cluster.env),
        "config show --json (env)": ([*AGENT, "config", "show", "--json"], cluster.env),
        "config set (bad URL)": ([*AGENT, "config", "set", f"broker_url={broker_url}:x"], cluster.env),
    }
    outputs: dict[str, str] = {}
    for label, (argv, env) in runs.items():
        result = subprocess.run(
            argv, env=env | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == (2 if "bad" in label else 0), (label, result.stderr)
        outputs[label] = result.stdout + result.stderr
    assert "redis://:***@" in outputs["config show --json (file)"]
    return outputs


def start_errors(cluster: Cluster, broker_url: str, why: str) -> dict[str, str]:
    """What an engine (URL from the environment) and an agent (URL from --broker-url) say when they cannot connect."""
    env = {**cluster.env, "CONVERGE_BROKER_URL": broker_url, "CONVERGE_API_BIND": f"127.0.0.1:{free_port()}"}
    runs = {
        f"engine start, {why}": ([sys.executable, "-m", "engine", "engine", "run"], env),
        f"agent start, {why}": (
            [*AGENT, "run", "--role", "web", "--id", "web-2", "--broker-url", broker_url],
            cluster.env,
        ),
    }
    outputs: dict[str, str] = {}
    for label, (argv, run_env) in runs.items():
        result = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 3, (label, result.stdout, result.stderr)
        outputs[label] = result.stdout + result.stderr
    return outputs


def api_answers(cluster: Cluster, source: str) -> dict[str, tuple[int, str]]:
    """Every route's answer, with the token and without it."""
    bodies: dict[str, dict[str, Any]] = {"/v1/workflows": {"source": source}, "/v1/plan": {"source": source}}
    answers: dict[str, tuple[int, str]] = {}
    with httpx.Client(base_url=cluster.env["CONVERGE_URL"], timeout=60) as http:
        for method, path in ROUTES:
            body = bodies.get(path, {"ids": []}) if method == "POST" else None
            answer = http.request(method, path, json=body, headers=cluster.headers)
            answers[f"{method} {path}"] = (answer.status_code, answer.text)
            answer = http.request(method, path, json=body)
            answers[f"{method} {path} (no token)"] = (answer.status_code, answer.text)
    return answers


def cli_outputs(cluster: Cluster, *commands: tuple[str, ...]) -> dict[str, str]:
    outputs: dict[str, str] = {}
    for command in commands:
        result = cluster.cli(*command)
        outputs["converge " + " ".join(command)] = result.stdout + result.stderr
    return outputs


def cluster_command_lines(cluster: Cluster, server: LocalRedis) -> dict[str, str]:
    """The command line of every live process of the cluster and of their children, by pid."""
    roots = {proc.pid for proc in cluster.procs.values()}
    if server.process is not None:
        roots.add(server.process.pid)
    parents = parent_pids()
    lines: dict[str, str] = {}
    for pid in parents:
        ancestor: int | None = pid
        while ancestor is not None and ancestor not in roots:
            ancestor = parents.get(ancestor)
        if ancestor is not None:
            try:
                lines[f"cmdline of {pid}"] = (
                    Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue  # it ended meanwhile
    return lines


def parent_pids() -> dict[int, int]:
    """Every live process's parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])  # after `pid (comm) state`
    return parents

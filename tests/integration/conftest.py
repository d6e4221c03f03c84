"""Real parts: a private Redis on a free port, the real engine and real `converge-agent` processes.

Nothing here touches a Redis or a database that the machine already runs: the Redis is our own child
process, the SQLite store lives in the test's tmp_path, and PostgreSQL tests use a database of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common import signing
from common.localredis import LocalRedis, free_port
from common.redisclient import redis_client

PG_URL = os.environ.get("CONVERGE_TEST_POSTGRES_URL")
# A developer's own token and trust settings must not leak into the clusters the tests start.
SECURITY_VARIABLES = (
    "CONVERGE_TOKEN",
    "CONVERGE_CA",
    "CONVERGE_INSECURE_HTTP",
    "CONVERGE_HOME",
    "CONVERGE_AGENT_ENGINE_KEY",
    "CONVERGE_AGENT_ENGINE_URL",
    "CONVERGE_AGENT_ENGINE_CA",
    "CONVERGE_AGENT_API_TOKEN",
    "CONVERGE_VAULT_KEY_FILE",
)


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail the test after `timeout_s`. Never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


# Where the quick start writes, and where a user may be looking: no test may touch it.
QUICKSTART_FILES = Path("/tmp/converge-quickstart")


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


@pytest.fixture(scope="session", autouse=True)
def quickstart_left_alone() -> Iterator[None]:
    """Fails the session if any test created, changed or removed what is under the quick start's folder."""
    before = (QUICKSTART_FILES.exists(), _snapshot(QUICKSTART_FILES))
    yield
    after = (QUICKSTART_FILES.exists(), _snapshot(QUICKSTART_FILES))
    assert after == before, f"the tests changed {QUICKSTART_FILES}, the quick start's folder"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new PostgreSQL database's URL, dropped on exit (CONVERGE_TEST_POSTGRES_URL names the server)."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CONVERGE_TEST_POSTGRES_URL must be set in CI: the store tests run on PostgreSQL too")
        pytest.skip("CONVERGE_TEST_POSTGRES_URL is not set")
    import sqlalchemy

    name = f"converge_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped at the end."""
    with postgres_database() as url:
        yield url


class Cluster:
    """An engine and agents as child processes, and the `converge` CLI run against them.

    The engine always asks for a token: the CLI gets an admin one in CONVERGE_TOKEN, and raw HTTP calls
    send `headers`. With `tls` the engine serves HTTPS with the certificate of `converge engine init` and
    the CLI trusts its CA (CONVERGE_CA); without, plain HTTP on loopback, for tests about something else.
    """

    def __init__(self, broker_url: str, workdir: Path, store_url: str, *, tls: bool = False) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.token: str | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(SECURITY_VARIABLES)}
        port = free_port()
        self.env.update(
            CONVERGE_BROKER_URL=broker_url,
            CONVERGE_STORE_URL=store_url,
            CONVERGE_API_BIND=f"127.0.0.1:{port}",
            CONVERGE_URL=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            CONVERGE_HOME=str(workdir / "engine-home"),
            CONVERGE_PLAN_TIMEOUT_S="20",
            # the engine's own agent only where a test asks for it (start_engine(CONVERGE_LOCAL_AGENT=...))
            CONVERGE_LOCAL_AGENT="false",
            # never a developer's own ~/.config/converge/agent.toml
            CONVERGE_AGENT_CONFIG=str(workdir / "agent.toml"),
            CONVERGE_AGENT_STATE_DIR=str(workdir / "agent-state"),
            # written by the engine when it starts, before any agent does
            CONVERGE_AGENT_ENGINE_KEY=str(workdir / "engine-home" / "keys" / "signing.pub"),
        )
        if not tls:
            self.env["CONVERGE_INSECURE_HTTP"] = "1"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = redis_client(broker_url)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    @property
    def headers(self) -> dict[str, str]:
        """The admin token's header, for calls made without the CLI."""
        assert self.token, "start the engine first: it makes the token"
        return {"Authorization": f"Bearer {self.token}"}

    def init_engine(self) -> dict[str, Any]:
        """`converge engine init --json`: the CA, the certificate and the first admin token, used from now on."""
        result = self.cli("engine", "init", "--json")
        assert result.returncode == 0, result.stderr
        made: dict[str, Any] = json.loads(result.stdout)
        if made["token"]:
            self.token = self.env["CONVERGE_TOKEN"] = made["token"]
        if self.tls:
            self.env["CONVERGE_CA"] = made["ca"]
        return made

    def start_engine(self, name: str = "engine", **env: str) -> None:
        """An engine process; `env` overrides variables for it alone (a second engine's address and id)."""
        if self.token is None:
            self.init_engine()
        shared, self.env = self.env, {**self.env, **env}
        try:
            self._spawn(name, [sys.executable, "-m", "engine", "engine", "run"])
            wait_for(lambda: self.cli("workflows", "list", "--json").returncode == 0, 30, f"the {name}")
        finally:
            self.env = shared

    def start_agent(self, *roles: str, agent_id: str, throttle: int | None = None) -> None:
        argv = [sys.executable, "-m", "agents", "run", "--id", agent_id]
        for role in roles:
            argv += ["--role", role]
        if throttle is not None:
            argv += ["--throttle", str(throttle)]
        self._spawn(f"agent-{agent_id}", argv)
        wait_for(lambda: self.agent_state(agent_id) in ("active", "backup"), 60, f"agent {agent_id} to be up")

    def agent_state(self, agent_id: str) -> str | None:
        result = self.cli("agents", "list", "--json")
        if result.returncode != 0:
            return None
        return next((a["state"] for a in json.loads(result.stdout) if a["id"] == agent_id), None)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def cli(
        self, *args: str, timeout_s: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`converge ARGS` against this cluster's engine."""
        return self._run("engine", args, self.env, timeout_s, stdin)

    def agent_cli(
        self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`converge-agent ARGS` with this cluster's environment (and `env` over it)."""
        return self._run("agents", args, {**self.env, **(env or {})}, timeout_s, None)

    @staticmethod
    def _run(
        module: str, args: tuple[str, ...], env: dict[str, str], timeout_s: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def show(self, workflow_id: str) -> dict[str, Any]:
        """`converge workflows show ID --json`."""
        result = self.cli("workflows", "show", workflow_id, "--json")
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def apply(self, path: Path, *extra: str) -> dict[str, Any]:
        """`converge apply FILE --wait --json`, returning the workflow; the exit code is checked by callers."""
        result = self.cli("apply", str(path), "--wait", "--json", "--timeout", "90", *extra)
        assert result.stdout, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        document["exit_code"] = result.returncode
        return document

    def signed(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A step message signed as the engine signs it, with its key (under CONVERGE_HOME)."""
        key = signing.load_or_create(Path(self.env["CONVERGE_HOME"]) / "keys" / "signing.key")
        return signing.sign(key, fields)

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path


@pytest.fixture
def cluster(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh engine (its own SQLite store) on a flushed private Redis; agents are started by the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    c = Cluster(redis_server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}")
    c.start_engine()
    yield c
    c.stop_all()
    c.redis.close()


@pytest.fixture
def tls_cluster(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Cluster]:
    """As `cluster`, with the engine serving HTTPS and the CLI trusting its CA."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    c = Cluster(redis_server.url, tmp_path, f"sqlite:///{tmp_path / 'converge.db'}", tls=True)
    c.start_engine()
    yield c
    c.stop_all()
    c.redis.close()


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(
                (ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), ""
            )
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


def desired_state(name: str, resources: str) -> str:
    return f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: {name}}}\nresources:\n{resources}"

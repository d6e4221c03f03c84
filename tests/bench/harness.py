"""The benchmarks' own harness: a private Redis, the real engine, real agents and a raw Celery worker.

Every process is a child of the benchmark in its own session, logging to a file in the run's work
directory; `Stack.close()` stops them all (SIGTERM to the group, then SIGKILL). Nothing here is shared
with the test suite: the benches must not change when a fixture does.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import redis
from celery import Celery
from rich.console import Console

from common.localredis import LocalRedis, free_port, redis_server_binary
from tests.bench.celery_baseline import make_baseline_app

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_ROLE = "bench"
T = TypeVar("T")


@dataclass
class BenchContext:
    """What every benchmark gets: the size of the run, where to work, where to print."""

    quick: bool
    keep: bool
    root: Path
    console: Console
    out: Path
    profile: bool = False

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


class BenchError(RuntimeError):
    """A benchmark could not run (a process died, a deadline passed); the message says where to look."""


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll until `condition()` is truthy and return it; raise BenchError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Stack:
    """A private Redis and the processes of one benchmark. Use as a context manager."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis_server = LocalRedis(workdir / "redis")
        self.children: dict[str, Child] = {}
        self.env: dict[str, str] = {}
        self.store_path = workdir / "converge.db"
        self._api: httpx.Client | None = None
        self._db: sqlite3.Connection | None = None
        self.baseline: Celery | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.redis_server.start()
        port = free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_") or k == "CONVERGE_LOG_LEVEL"
        }
        self.env.update(
            CONVERGE_BROKER_URL=self.redis_server.url,
            CONVERGE_STORE_URL=f"sqlite:///{self.store_path}",
            CONVERGE_API_BIND=f"127.0.0.1:{port}",
            # HTTPS with a token, as in production: the throughput ratio includes their cost.
            CONVERGE_URL=f"https://127.0.0.1:{port}",
            CONVERGE_HOME=str(self.workdir / "engine-home"),
            CONVERGE_LOCAL_AGENT="false",  # the agents measured are the harness's own
            CONVERGE_AGENT_STATE_DIR=str(self.workdir / "agent-state"),
            CONVERGE_AGENT_ENGINE_KEY=str(self.workdir / "engine-home" / "keys" / "signing.pub"),
            BENCH_BROKER_URL=self.redis_server.url,
            PYTHONPATH=str(REPO_ROOT),
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.baseline is not None:
            self.baseline.close()
        if self._api is not None:
            self._api.close()
        if self._db is not None:
            self._db.close()
        for name in reversed(list(self.children)):
            self.stop(name)
        self.redis_server.stop()

    @property
    def broker_url(self) -> str:
        return self.redis_server.url

    @property
    def url(self) -> str:
        return self.env["CONVERGE_URL"]

    def spawn(self, name: str, argv: list[str]) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children[name] = child
        return child

    def stop(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is None or child.proc.poll() is not None:
            return
        os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()

    def kill(self, name: str) -> None:
        """SIGKILL the child's whole process group (no shutdown of any kind) and reap it."""
        child = self.children.pop(name, None)
        if child is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()

    def check_alive(self) -> None:
        """Raise BenchError naming the log of any child that has exited."""
        for child in self.children.values():
            if child.proc.poll() is not None:
                raise BenchError(f"{child.name} exited with {child.proc.returncode}: {tail(child.log)}")

    def _wait(self, condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
        def checked() -> T | None:
            self.check_alive()
            return condition()

        return wait_until(checked, timeout_s, what)

    # -- the pieces ------------------------------------------------------------------------------------

    def init_engine(self) -> None:
        """`converge engine init`: the engine's certificate, and an admin token the CLI and `api` send."""
        made = self.cli("engine", "init", "--json")
        if made.returncode != 0:
            raise BenchError(f"`converge engine init` failed: {made.stderr.strip()}")
        document = json.loads(made.stdout)
        if document["token"]:
            self.env["CONVERGE_TOKEN"] = document["token"]
        self.env["CONVERGE_CA"] = document["ca"]

    def start_engine(self) -> None:
        if "CONVERGE_TOKEN" not in self.env:
            self.init_engine()
        self.spawn("engine", [sys.executable, "-m", "engine", "engine", "run"])
        self._wait(self._healthy, 60, "the engine API")

    def _healthy(self) -> bool:
        try:
            return self.api.get("/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    def start_agent(
        self,
        agent_id: str,
        *,
        role: str = BENCH_ROLE,
        throttle: int = 20,
        task_events: bool | None = None,
        autoscale: bool | None = None,
    ) -> Child:
        """`python -m agents run`; `task_events` and `autoscale` None leave the agent's defaults (on, as
        shipped); `autoscale=False` keeps `throttle` pool processes, as `celery worker -c` does."""
        argv = [sys.executable, "-m", "agents", "run", "--role", role, "--id", agent_id]
        shared = dict(self.env)
        if autoscale is not None:
            self.env["CONVERGE_AGENT_AUTOSCALE"] = "true" if autoscale else "false"
        argv += ["--throttle", str(throttle)]
        if task_events is not None:
            argv.append("--task-events" if task_events else "--no-task-events")
        try:
            child = self.spawn(f"agent-{agent_id}", argv)
        finally:
            self.env = shared
        self._wait(
            lambda: self.agent_state(agent_id) in ("active", "backup"), 90, f"agent {agent_id} to be up"
        )
        # `active` is announced on worker_ready, when the prefork pool is up; give the children a moment
        # to finish importing so that the first timed run does not pay for it.
        time.sleep(1.0)
        return child

    def agent_state(self, agent_id: str) -> str | None:
        try:
            agents = self.api.get("/v1/agents").json()
        except (httpx.TransportError, ValueError):
            return None
        return next((a["state"] for a in agents if a["id"] == agent_id), None)

    def start_baseline_worker(self, concurrency: int = 20, *, events: bool = False) -> Child:
        """`celery -A tests.bench.celery_baseline worker -P prefork -c 20 --prefetch-multiplier 1 -O fair`,
        plus `-E` (task events) when `events`. Named `celery-baseline` (stop it before starting another)."""
        argv = [sys.executable, "-m", "celery", "-A", "tests.bench.celery_baseline", "worker"]
        argv += ["-P", "prefork", "-c", str(concurrency), "--prefetch-multiplier", "1", "-O", "fair"]
        argv += ["--without-gossip", "--without-mingle", "-n", "baseline@%h", "-l", "WARNING"]
        if events:
            argv.append("-E")
        if "celery-baseline" in self.children:
            raise BenchError("a baseline worker is already running: stop it first")
        child = self.spawn("celery-baseline", argv)
        if self.baseline is None:
            self.baseline = make_baseline_app(self.broker_url)
        app = self.baseline

        def answers() -> bool:
            return bool(app.control.ping(timeout=0.5))

        self._wait(answers, 90, "the baseline Celery worker")
        time.sleep(1.0)
        return child

    # -- the engine's API and store --------------------------------------------------------------------

    @property
    def api(self) -> httpx.Client:
        if self._api is None:
            self._api = self.new_api_client()
        return self._api

    def reset_api(self) -> None:
        """Drop the keep-alive client (its connection died with the engine); the next use opens a new one."""
        if self._api is not None:
            self._api.close()
            self._api = None

    def new_api_client(self) -> httpx.Client:
        """A client of the engine that trusts its CA and sends the admin token."""
        trust = ssl.create_default_context(cafile=self.env["CONVERGE_CA"])
        headers = {"Authorization": f"Bearer {self.env['CONVERGE_TOKEN']}"}
        return httpx.Client(base_url=self.url, timeout=120, verify=trust, headers=headers)

    def submit(
        self, source: str, filename: str = "bench.yaml", client: httpx.Client | None = None
    ) -> tuple[str, float]:
        """POST a desired state; return the workflow id and the wall time just before the request."""
        started = time.time()
        http = client or self.api
        response = http.post("/v1/workflows", json={"source": source, "filename": filename})
        if response.status_code >= 400:
            raise BenchError(f"submit answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        if not body.get("created"):
            raise BenchError(f"the engine reused workflow {body['workflow']['id']}: make the state unique")
        return str(body["workflow"]["id"]), started

    @property
    def db(self) -> sqlite3.Connection:
        """A read-only connection to the engine's SQLite store: polling it does not load the engine."""
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, check_same_thread=False)
        return self._db

    def workflow_row(self, workflow_id: str) -> tuple[str, float | None]:
        row = self.db.execute(
            "SELECT state, finished_at FROM converge_workflows WHERE id = ?", (workflow_id,)
        ).fetchone()
        if row is None:
            raise BenchError(f"workflow {workflow_id} is not in the store")
        return str(row[0]), row[1]

    def wait_finished(
        self, workflow_id: str, timeout_s: float, interval_s: float = 0.05
    ) -> tuple[str, float]:
        """Poll the store (20 Hz by default) until the workflow is final; its state and `finished_at`."""

        def final() -> tuple[str, float] | None:
            self.check_alive()
            state, finished_at = self.workflow_row(workflow_id)
            return (state, finished_at) if finished_at is not None else None

        state, finished_at = wait_until(final, timeout_s, f"workflow {workflow_id} to finish", interval_s)
        if state != "succeeded":
            raise BenchError(f"workflow {workflow_id} ended {state}; see {self.logs}")
        return state, finished_at

    def steps(self, workflow_id: str) -> list[tuple[int, str, float | None, float | None]]:
        """(index, state, started_at, finished_at) of every step, in file order."""
        rows = self.db.execute(
            "SELECT idx, state, started_at, finished_at FROM converge_steps WHERE workflow_id = ? ORDER BY idx",
            (workflow_id,),
        ).fetchall()
        return [(int(i), str(s), a, b) for i, s, a, b in rows]

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url)

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@contextmanager
def workdir(root: Path, name: str, keep: bool) -> Iterator[Path]:
    """A fresh directory for one benchmark; removed afterwards unless `keep` or the benchmark failed."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok and not keep:
            shutil.rmtree(path, ignore_errors=True)


# -- workflows ---------------------------------------------------------------------------------------------


def desired_state(name: str, resources: list[str]) -> str:
    """A desired-state document from resource entries already written as YAML flow mappings."""
    head = f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: {name}}}\nresources:\n"
    return head + "".join(f"  - {r}\n" for r in resources)


def noop_step(name: str, depends_on: str | None = None, role: str = BENCH_ROLE) -> str:
    """A `wait_for` of 0 seconds: a step that costs the agent nothing."""
    return wait_step(name, 0, depends_on, role)


def wait_step(name: str, seconds: float, depends_on: str | None = None, role: str = BENCH_ROLE) -> str:
    """A `wait_for` of `seconds`, depending on the `wait_for` named `depends_on` if given."""
    dep = f", depends_on: [wait_for/{depends_on}]" if depends_on else ""
    return f"{{kind: wait_for, name: {name}, role: {role}{dep}, spec: {{seconds: {seconds:g}}}}}"


# -- processes, without psutil -----------------------------------------------------------------------------


def pids_marked(marker: str) -> list[int]:
    """Processes whose command line or environment contains `marker` (the whole tree of a step)."""
    needle = marker.encode()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry.name}/{what}", "rb") as f:
                    if needle in f.read():
                        found.append(int(entry.name))
                        break
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid() and _alive(pid)]


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie is gone for our purpose: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# -- the machine -------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import celery
    import kombu
    import sqlalchemy

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": _cpuinfo("model name"),
        "memory_gb": _meminfo_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": redis_server_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }
    info.update(_git())
    return info


def redis_server_version() -> str:
    try:
        out = subprocess.run(
            [redis_server_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else out.strip() or "unknown"


def _cpuinfo(key: str) -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_gb() -> float | None:
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git() -> dict[str, Any]:
    """The commit measured, read-only: `rev-parse` and `status --porcelain`."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "uncommitted_changes": bool(status) if status is not None else None}


# -- CPU accounting ----------------------------------------------------------------------------------------

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process."""
    found: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S)
    return found


def _tree(snapshot: dict[int, tuple[int, float]], root: int) -> tuple[float, float]:
    """CPU seconds of `root` itself and of all its live descendants (a worker's pool)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in snapshot.items():
        children.setdefault(ppid, []).append(pid)
    own = snapshot.get(root, (0, 0.0))[1]
    below, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        below += snapshot[pid][1]
        todo += children.get(pid, [])
    return own, below


class CpuMeter:
    """CPU seconds spent by named processes (and their pools) between `start()` and `stop()`.

    On a machine shared with other work, wall-clock rates move with the load; the CPU a step costs each
    process moves less (contention still raises it somewhat), and it says where the time goes.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self._before: dict[int, tuple[int, float]] = {}
        self._self_before = 0.0

    def start(self) -> None:
        self._before = _cpu_snapshot()
        t = os.times()
        self._self_before = t.user + t.system

    def stop(self) -> dict[str, float]:
        after = _cpu_snapshot()
        t = os.times()
        used = {"bench client": t.user + t.system - self._self_before}
        for name, pid in self.roots.items():
            own0, pool0 = _tree(self._before, pid)
            own1, pool1 = _tree(after, pid)
            used[name] = own1 - own0
            if pool1 or pool0:
                used[f"{name} pool"] = max(0.0, pool1 - pool0)
        return used


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Timer:
    """Wall-clock seconds of a block, for reporting how long a benchmark took."""

    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

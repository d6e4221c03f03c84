"""`converge up`: the whole system on one machine, for a first look and for demos.

A private Redis, SQLite under the home folder, the engine and one agent per role of the file, each a
child process in its own session (so that Ctrl-C reaches only `converge up`, which stops them in order).
Its agents enroll as any agent does, and `up` admits them: each runs with its own Redis user and API token,
so that steps that use credentials work here as on a fleet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from common.errors import ConvergeError, Unreachable
from common.localredis import LocalRedis, free_port
from common.models import ADMISSION_FILE, WorkflowState, WorkflowView
from common.store import open_store
from engine import auth, recap, render
from engine.client import EngineClient
from engine.service import SIGNING_PUBLIC, signing_key
from workflows.registry import default_registry
from workflows.spec import load_file

UP_TOKEN = "up"
DEFAULT_API_PORT = 8765  # the CLI's default CONVERGE_URL
QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


class Children:
    """Child processes with their logs; stopped newest first, SIGTERM then SIGKILL to the whole group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def dead(self) -> list[str]:
        return [name for name, proc, _ in self.procs if proc.poll() is not None]

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc, log in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def up(file: str | None, home: Path, *, once: bool, timeout_s: float, as_json: bool = False) -> int:
    """Start everything, apply FILE (default: the quick start), show progress; returns the exit code.
    With `as_json`, no live display: once the workflow finishes, one JSON document (`_document`)."""
    path = Path(file) if file else QUICKSTART
    desired = load_file(path, default_registry())
    roles = sorted({r.role for r in desired.resources if r.role})
    home = home.resolve()
    signal.signal(signal.SIGTERM, _interrupt)
    broker = LocalRedis(home / "redis").start()
    children = Children(home / "logs")
    try:
        env = dict(os.environ)
        env.update(
            CONVERGE_BROKER_URL=broker.url,
            CONVERGE_STORE_URL=f"sqlite:///{home / 'converge.db'}",
            CONVERGE_API_BIND=f"127.0.0.1:{_api_port()}",
            CONVERGE_AGENT_STATE_DIR=str(home / "agents"),
            CONVERGE_AGENT_ENGINE_KEY=str(home / SIGNING_PUBLIC),
            CONVERGE_HOME=str(home),
            CONVERGE_INSECURE_HTTP="1",  # the engine listens on loopback only
            CONVERGE_LOCAL_AGENT="true",  # its own agent, role `engine`: imports and catalogs
        )
        env["CONVERGE_URL"] = f"http://{env['CONVERGE_API_BIND']}"
        token = _own_token(env["CONVERGE_STORE_URL"])
        signing_key(home)  # before the agents start, which read its public half
        client = EngineClient(env["CONVERGE_URL"], token)
        render.errors.print(
            f"starting the engine and {len(roles)} agent(s) ({', '.join(roles)}) under {home}"
        )
        children.start("engine", [sys.executable, "-m", "engine", "engine", "run"], env)
        agent_ids = [f"{socket.gethostname()}-{role}" for role in roles]
        # Each run has a new Redis (on a new port): the credentials a last run's agents kept name a Redis
        # that is gone, so they ask the engine again (their key and admission stay).
        for kept in (home / "agents").glob(f"*/{ADMISSION_FILE}"):
            kept.unlink()
        for role, agent_id in zip(roles, agent_ids, strict=True):
            children.start(
                f"agent-{role}",
                [sys.executable, "-m", "agents", "run", "--role", role, "--id", agent_id],
                _agent_env(env),
            )
        _wait_ready(client, set(agent_ids), children, home)
        view, _ = client.submit(path.read_text(encoding="utf-8"), str(path))
        view = render.follow(lambda: client.workflow(view.id), timeout_s, live=not as_json)
        counts = recap.recap(view.steps or [])
        if as_json:
            render.emit_json(_document(view, counts, env, token, home))
        else:
            render.workflow_result(view, counts)
            _how_to_look(view.id, env, token, once=once)
        code = 0 if view.state == WorkflowState.SUCCEEDED else 1
        if once:
            return code
        render.errors.print("converge is running; press Ctrl-C to stop it")
        while not children.dead():
            time.sleep(0.5)
        raise Unreachable(f"{', '.join(children.dead())} stopped; see the logs under {home / 'logs'}")
    except KeyboardInterrupt:
        render.errors.print("stopping")
        return 130
    finally:
        children.stop()
        broker.stop()


def _api_port() -> int:
    """The CLI's default port (8765) when it is free, so that `converge` in another terminal finds the
    engine without CONVERGE_URL; else any free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", DEFAULT_API_PORT))
        except OSError:
            return free_port()
    return DEFAULT_API_PORT


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _agent_env(env: dict[str, str]) -> dict[str, str]:
    """The agents' environment: the engine's address, and neither the broker's credentials nor a token, so
    that they enroll like any other agent and get their own Redis user, API token and event key."""
    agent_env = {k: v for k, v in env.items() if k not in ("CONVERGE_BROKER_URL", "CONVERGE_TOKEN")}
    agent_env["CONVERGE_AGENT_ENGINE_URL"] = env["CONVERGE_URL"]
    return agent_env


def _wait_ready(client: EngineClient, agent_ids: set[str], children: Children, home: Path) -> None:
    """Admit this run's own agents as they enroll (a later run finds them admitted), until all are active."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if children.dead():
            raise Unreachable(
                f"{', '.join(children.dead())} did not start; see the logs under {home / 'logs'}"
            )
        try:
            agents = client.agents()
            for agent in agents:
                if agent.id in agent_ids and agent.state == "pending":
                    client.decide("admit", agent.id)
            if agent_ids <= {a.id for a in agents if a.state == "active"}:
                return
        except ConvergeError:
            pass
        time.sleep(0.2)
    raise Unreachable(f"the engine and agents did not come up within 90s; see the logs under {home / 'logs'}")


def _own_token(store_url: str) -> str:
    """A fresh admin token named `up` for this run, replacing the last run's: for the CLI, and printed."""
    store = open_store(store_url)
    try:
        if any(t.name == UP_TOKEN for t in store.tokens()):
            store.revoke_token(UP_TOKEN)
        return auth.create(store, UP_TOKEN, auth.Role.ADMIN)
    finally:
        store.close()


def _document(
    view: WorkflowView, counts: recap.Recap, env: dict[str, str], token: str, home: Path
) -> dict[str, object]:
    """`up --json`: the workflow as `apply --json` gives it, its recap, and where the running system is."""
    return {
        "workflow": view.model_dump(mode="json"),
        "recap": counts,
        "url": env["CONVERGE_URL"],
        "token": token,
        "broker_url": env["CONVERGE_BROKER_URL"],
        "home": str(home),
        "logs": str(home / "logs"),
        "export": _export_line(env, token),
    }


def _export_line(env: dict[str, str], token: str) -> str:
    """The shell line under which `converge ...` works in another terminal, as printed."""
    scripts = Path(sys.executable).parent  # where `converge` and `celery` were installed, maybe not on PATH
    return f'export PATH="{scripts}:$PATH" CONVERGE_URL={env["CONVERGE_URL"]} CONVERGE_TOKEN={token}'


def _how_to_look(workflow_id: str, env: dict[str, str], token: str, *, once: bool) -> None:
    url, broker = env["CONVERGE_URL"], env["CONVERGE_BROKER_URL"]
    when = "these addresses live while `converge up` runs; without --once it keeps running" if once else ""
    scripts = Path(sys.executable).parent  # where `converge` and `celery` were installed, maybe not on PATH
    render.console.print(
        f"\nHow to look at it{f' ({when})' if when else ''}, from another terminal:\n"
        f'  export PATH="{scripts}:$PATH" CONVERGE_URL={url} CONVERGE_TOKEN={token}\n'
        f"  converge workflows show {workflow_id}\n"
        f"  converge agents list\n"
        f"  CONVERGE_BROKER_URL={broker} celery -A common.flower_app flower\n",
        highlight=False,
        soft_wrap=True,
    )

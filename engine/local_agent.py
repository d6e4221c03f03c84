"""The engine's own agent: role `engine`, a child process of `converge engine run` on the engine's machine.

It runs the built-in workflows (the imports of machines, engine.imports.start) and stores catalogs, as steps
like any other, so that they are visible and cancellable. It enrolls as any agent does, with a key the engine
made under its home, and the engine admits it at once because it holds that key (engine.admission.enroll).
Several engines each run one; the role's election picks which takes the steps.

Its settings are its own: none of the CONVERGE_AGENT_* variables of the engine's environment reach it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from common import signing
from common.models import AGENT_KEY_FILE
from engine.tls import TlsFiles

log = logging.getLogger("converge.engine")

FOLDER = Path("local-agent")  # under the engine's home: the agent's state and configuration
ROLE = "engine"
THROTTLE = 4
STOP_S = 15.0
PR_SET_PDEATHSIG = 1


def agent_id(engine_id: str) -> str:
    """`engine-` and the engine's id, with what an agent id cannot hold made `-` (host:port -> host-port)."""
    return ("engine-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", engine_id))[:63].rstrip("-.")


def own_key(home: Path, agent: str) -> str:
    """The public key (PEM) the engine's agent enrolls with, made under `home` on first use."""
    return signing.public_pem(signing.load_or_create(home / FOLDER / agent / AGENT_KEY_FILE))


def environment(home: Path, engine_url: str, https: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_AGENT_")}
    folder = home / FOLDER
    env.update(
        CONVERGE_AGENT_STATE_DIR=str(folder),
        CONVERGE_AGENT_CONFIG=str(folder / "agent.toml"),
        CONVERGE_AGENT_ENGINE_URL=engine_url,
        CONVERGE_AGENT_THROTTLE=str(THROTTLE),
    )
    if https:
        env["CONVERGE_AGENT_ENGINE_CA"] = str(TlsFiles.under(home).ca_cert)
    return env


class LocalAgent:
    """Starts the agent process, and stops it (SIGTERM, then SIGKILL) when the engine stops."""

    def __init__(self, home: Path, engine_id: str, engine_url: str, https: bool) -> None:
        self.id = agent_id(engine_id)
        self.key = own_key(home, self.id)
        self._env = environment(home, engine_url, https)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """In the engine's process group (a service manager's stop reaches both), and told by the kernel to
        stop when the engine dies, SIGKILL included: never an agent left behind without its engine."""
        argv = [sys.executable, "-m", "agents", "run", "--id", self.id, "--role", ROLE]
        self._proc = subprocess.Popen(argv, env=self._env, preexec_fn=_die_with_parent)
        log.info("started this engine's own agent %s (role %s, pid %d)", self.id, ROLE, self._proc.pid)

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM), in the child before it runs the agent."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

"""The agent's health file: written by its heartbeat, read by `converge-agent health` (agents.health).

Written atomically (a temporary file in the same folder, then os.replace), so that a probe never reads half
a file. It holds nothing secret, so it is readable by all: a monitoring user may run the probe.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from agents.config import AgentSettings, ConfigError
from agents.health import HEALTH_FILE, HealthRecord

log = logging.getLogger("converge.agent")


class NoHealthFile(Exception):
    """No agent has written a health file where the settings point."""


def write(path: Path, record: HealthRecord) -> None:
    """Replace the file at `path` with `record`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(record.model_dump_json())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> HealthRecord:
    """The record at `path`; NoHealthFile if there is none, ConfigError if it cannot be read or is junk."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoHealthFile(str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the agent's health file {path}: {exc.strerror}") from exc
    try:
        return HealthRecord.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(
            f"{path} is not an agent health file ({exc.error_count()} problems): remove it, and start the "
            "agent with `converge-agent run`"
        ) from exc


def locate(settings: AgentSettings, id_given: bool) -> Path:
    """The health file of the agent `settings` name; when they name none explicitly (no id set) and that
    agent's folder has none, the one agent's of the state folder, if only one agent has run there."""
    own = settings.agent_dir / HEALTH_FILE
    if own.exists() or id_given:
        return own
    state_dir = settings.state_dir.expanduser()
    found = sorted(state_dir.glob(f"*/{HEALTH_FILE}"))
    if len(found) > 1:
        ids = ", ".join(p.parent.name for p in found)
        raise ConfigError(
            f"several agents have run in {state_dir} ({ids}): name one with --id ID (or CONVERGE_AGENT_ID)"
        )
    return found[0] if found else own


def pid_alive(record: HealthRecord) -> bool | None:
    """Whether the record's pid is a live process here; None if the record comes from another host."""
    if record.host != socket.gethostname():
        return None
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        return True
    return True


class HealthWriter:
    """Writes the health file on each heartbeat, from what the agent knows of itself at that moment.

    A failed write is logged once until one succeeds again: a full disk must not stop the heartbeat.
    """

    def __init__(
        self,
        settings: AgentSettings,
        admission: str,
        queues: Callable[[], list[str]],
        leader_of: Callable[[], list[str]],
    ) -> None:
        self.path = settings.agent_dir / HEALTH_FILE
        self.settings = settings
        self.admission = admission  # set to `denied` or `revoked` when the operator turns the agent away
        self.queues = queues
        self.leader_of = leader_of
        self._failing = False

    def record(self, redis_ok: bool, redis_error: str | None, *, stopped: bool = False) -> HealthRecord:
        return HealthRecord(
            agent_id=self.settings.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            at=datetime.fromtimestamp(time.time(), UTC),
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            redis_ok=redis_ok,
            redis_error=redis_error,
            admission=self.admission,
            roles=list(self.settings.roles),
            leader_of=self.leader_of(),
            queues=self.queues(),
            stopped=stopped,
        )

    def beat(self, redis_ok: bool, redis_error: str | None = None, *, stopped: bool = False) -> None:
        try:
            write(self.path, self.record(redis_ok, redis_error, stopped=stopped))
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the agent's health file %s: %s", self.path, exc)
            self._failing = True
        else:
            self._failing = False

"""Enrollment: how an agent on a host the operator does not fully trust gets credentials (engine.admission).

The rule: an agent enrolls when it is given the engine's address (`engine_url`, with `engine_ca`) and no
token of its own (`api_token`). It makes an Ed25519 key pair in its state folder, presents its id, roles,
public key and the facts of its host to the engine, and waits, asking every few seconds, signed with its key,
until the operator admits or denies it. Until then it has no broker credentials and does not touch Redis.
Admitted, it keeps what the engine gave it (its broker URL with its own Redis user, its API token and the
engine's public key) in its state folder, readable by its user only, and runs as usual with them; denied or
revoked, it exits 1. An agent given a working broker URL and no `engine_url` (or its own token) does not
enroll: that is the trusted path, for agents on the engine's own host (`converge up`'s do enroll, and
`up` admits them).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from agents.config import AgentSettings
from agents.engine_api import EngineApi, EngineApiError
from common import signing
from common.errors import ConvergeError, Refused
from common.models import ADMISSION_FILE, AGENT_KEY_FILE, Admission, EnrollRequest, StatusRequest
from common.redisclient import redis_client
from common.settings import redact
from common.version import converge_version
from workflows.capabilities import to_json

log = logging.getLogger("converge.agent")

KEY_FILE = AGENT_KEY_FILE
ENGINE_KEY_FILE = "engine.pub"
POLL_S = 2.0


def wanted(settings: AgentSettings) -> bool:
    """Whether the agent must be admitted: it knows the engine and has no token of its own."""
    return bool(settings.engine_url) and not settings.api_token


def admitted(settings: AgentSettings, poll_s: float = POLL_S) -> tuple[AgentSettings, bytes]:
    """The settings to run with, and the key to sign status events with: the admission kept in the state
    folder while Redis accepts it, else the one the engine gives after enrolling and waiting. Refused (exit
    1) if the operator denies the agent."""
    folder = settings.agent_dir
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = _read(folder / ADMISSION_FILE)
    if kept is None or not kept.event_key or not _accepted(kept):
        kept = _enroll_and_wait(settings, signing.load_or_create(folder / KEY_FILE), poll_s)
        _keep(folder, kept)
    engine_key = folder / ENGINE_KEY_FILE if kept.engine_key else settings.engine_key
    update = {"broker_url": kept.broker_url, "api_token": kept.api_token, "engine_key": engine_key}
    return settings.model_copy(update=update), base64.b64decode(kept.event_key or "")


def capabilities(settings: AgentSettings) -> dict[str, Any]:
    """The facts of this host the operator sees before admitting the agent, and its capability document,
    which an import validates against its catalog (workflows.kinds.imports)."""
    return {
        "hostname": settings.host_name or socket.gethostname(),
        "document": capability_document(settings),
        "os_release": os_release(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "python": platform.python_version(),
        "converge_version": converge_version(),
    }


def capability_document(settings: AgentSettings) -> dict[str, Any] | None:
    """The document of `capabilities_file`, else the host's; None (and a warning) when it cannot be read."""
    from agents.capabilities import document_from_file, host_document  # which reads os_release here

    try:
        path = settings.capabilities_file
        document = document_from_file(path) if path else host_document()
    except (ConvergeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("enrolling without a capability document (an import cannot validate it): %s", exc)
        return None
    loaded: dict[str, Any] = json.loads(to_json(document))
    return loaded


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """The operating system's name and version from os-release (empty if the host has none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    found = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    wanted_keys = ("ID", "NAME", "VERSION_ID", "PRETTY_NAME")
    return {key: found[key].strip().strip('"') for key in wanted_keys if key in found}


def _enroll_and_wait(settings: AgentSettings, key: Ed25519PrivateKey, poll_s: float) -> Admission:
    api = EngineApi(settings.engine_url, "", settings.engine_ca)
    request = EnrollRequest(
        id=settings.id,
        roles=settings.roles,
        public_key=signing.public_pem(key),
        capabilities=capabilities(settings),
    )
    answer = _patiently(lambda: api.enroll(request), poll_s)
    log.warning(
        "agent %s enrolled with the engine at %s and waits for the operator: `converge agents admit %s`",
        settings.id,
        redact(settings.engine_url),
        settings.id,
    )
    while True:
        answer = _patiently(lambda: api.admission(proof(settings.id, key)), poll_s)
        if answer.state == "admitted" and answer.broker_url and answer.api_token and answer.event_key:
            log.warning("agent %s admitted: starting with its own credentials", settings.id)
            return answer
        if answer.state in ("denied", "revoked"):
            raise Refused(_turned_away(settings, answer.state, "it does not start"))
        time.sleep(poll_s)


def refusal(settings: AgentSettings) -> str | None:
    """Why a running agent must stop: the operator denied or revoked it since it was admitted (Redis then
    refuses its user). None while the engine still admits it, or cannot be asked now."""
    try:
        key = signing.load_or_create(settings.agent_dir / KEY_FILE)
        answer = EngineApi(settings.engine_url, "", settings.engine_ca).admission(proof(settings.id, key))
    except (OSError, ValueError, EngineApiError) as exc:
        log.warning("cannot ask the engine whether this agent is still admitted: %s", exc)
        return None
    if answer.state in ("denied", "revoked"):
        return _turned_away(settings, answer.state, "it stops")
    return None


def _turned_away(settings: AgentSettings, state: str, outcome: str) -> str:
    return (
        f"agent {settings.id} was {state} by the operator of the engine at {redact(settings.engine_url)}: "
        f"{outcome}. Ask them to admit it (`converge agents admit {settings.id}`)"
    )


def proof(agent_id: str, key: Ed25519PrivateKey, now: float | None = None) -> StatusRequest:
    """A status request signed with the agent's key, at this time."""
    at_ms = int((time.time() if now is None else now) * 1000)
    signature = base64.b64encode(key.sign(StatusRequest.proof(agent_id, at_ms))).decode()
    return StatusRequest(id=agent_id, at_ms=at_ms, signature=signature)


def _patiently(call: Callable[[], Admission], poll_s: float) -> Admission:
    """`call()`, tried again while the engine cannot be reached; Refused when the engine refuses."""
    warned = False
    while True:
        try:
            return call()
        except EngineApiError as exc:
            if not exc.retryable:
                raise Refused(f"the engine refused this agent's enrollment: {exc}") from None
            if not warned:
                log.warning("%s; trying again every %gs", exc, poll_s)
                warned = True
        time.sleep(poll_s)


def _accepted(admission: Admission) -> bool:
    """Whether Redis still takes the kept credentials (not a revoked agent's, nor ones Redis forgot)."""
    client = redis_client(admission.broker_url or "", socket_connect_timeout=5)
    try:
        client.ping()
    except redis.AuthenticationError:
        log.warning("Redis refuses the agent's kept credentials: asking the engine again")
        return False
    except redis.RedisError:
        return True  # Redis is away: the agent says so when it starts, as it always does
    finally:
        client.close()
    return True


def _read(path: Path) -> Admission | None:
    try:
        return Admission.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError):
        log.warning("cannot use the kept admission %s: enrolling again", path)
        return None


def _keep(folder: Path, admission: Admission) -> None:
    """Write the admission and the engine's key, readable by the agent's user only."""
    if admission.engine_key:
        _write_private(folder / ENGINE_KEY_FILE, admission.engine_key)
    _write_private(folder / ADMISSION_FILE, admission.model_dump_json())


def _write_private(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

"""The policy the engine sets for the agent's roles (common.policy): fetched every heartbeat interval, kept
in the agent's state folder, and handed to a callback when it changes.

The follower runs in a thread of its own, with a timeout of at most one interval per request: a slow or
down engine delays only the next fetch, never a heartbeat. The last policy received is kept in
`policy.json` in the agent's state folder, written atomically, so that `converge-agent config show` (another
process) and the agent's next start apply it too, also while the engine cannot be reached.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from agents import config
from agents.config import AgentSettings, Resolved, Source
from agents.engine_api import TIMEOUT_S, EngineApi, EngineApiError
from common.policy import AgentPolicy

log = logging.getLogger("converge.agent.policy")

POLICY_FILE = "policy.json"
OnChange = Callable[[AgentPolicy], object]
"""Told of each policy that differs from the last one: the values to apply, and the role each came from."""


def policy_path(settings: AgentSettings) -> Path:
    return settings.agent_dir / POLICY_FILE


def read(path: Path) -> AgentPolicy | None:
    """The policy kept at `path`; None when there is none, or it cannot be read (said in the log)."""
    try:
        return AgentPolicy.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("ignoring the kept policy %s (%s): the engine sends it again", path, exc)
        return None


def save(path: Path, policy: AgentPolicy) -> None:
    """Replace the kept policy atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(policy.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve(options: dict[str, Any] | None = None) -> Resolved:
    """The agent's settings with the policy it last received (kept in its state folder) in its place."""
    own = config.load(options)
    kept = read(policy_path(own.settings))
    if kept is None or not kept.values:
        return own
    return config.load(options, kept.values)


class PolicyApi(Protocol):
    """Where the follower fetches the policy: the engine's agent API (agents.engine_api.EngineApi)."""

    def policy(self, roles: list[str]) -> AgentPolicy: ...


class PolicyFollower:
    """Fetches the agent's policy every `interval_s` in a thread; calls `on_change` when it differs from the
    last one (at first, the one kept in the state folder)."""

    def __init__(
        self,
        api: PolicyApi,
        roles: list[str],
        interval_s: float,
        on_change: OnChange,
        last: AgentPolicy | None = None,
    ) -> None:
        self.api = api
        self.roles = roles
        self.interval_s = interval_s
        self.on_change = on_change
        self.last = last or AgentPolicy()
        self._problem: str | None = None  # the last failure said in the log, said again only once changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="converge-policy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval_s):
                return

    def poll(self) -> bool:
        """Fetch once; True when the policy changed (and `on_change` was called)."""
        try:
            fetched = self.api.policy(self.roles)
        except EngineApiError as exc:
            if str(exc) != self._problem:
                self._problem = str(exc)
                log.warning("cannot fetch this agent's policy, keeping the last one: %s", exc)
            return False
        if self._problem is not None:
            log.info("fetching this agent's policy again")
            self._problem = None
        if fetched == self.last:
            return False
        try:
            self.on_change(fetched)
        except Exception:  # a bug in a callback must not end the follower
            log.exception("the policy callback failed")
        self.last = fetched
        return True


class Recorder:
    """The follower's first callback: keep the policy in the state folder (for `config show` and the next
    start) and say in the log what changed; agents.live then applies it."""

    def __init__(self, settings: AgentSettings, sources: Mapping[str, Source]) -> None:
        self.path = policy_path(settings)
        self.last = read(self.path) or AgentPolicy()
        values = settings.model_dump(mode="json")
        # what the agent runs with, and where each value came from: what a change is told against
        self.running: dict[str, tuple[Any, Source]] = {
            k: (values[k], sources.get(k, "default")) for k in values
        }

    def __call__(self, policy: AgentPolicy) -> None:
        save(self.path, policy)
        for line in describe(self.last, policy, self.running):
            log.warning("%s", line)
        for conflict in policy.conflicts:
            log.warning("policy conflict between this agent's roles: %s", conflict)
        problem = config.load(policy=policy.values).policy_problem
        if problem:
            log.error("%s", problem)
        self.last = policy
        self._follow(policy)

    def _follow(self, policy: AgentPolicy) -> None:
        """Move `running` to what the agent runs with once the policy is applied."""
        own = None
        for key, (_, source) in list(self.running.items()):
            if source in ("env", "option"):
                continue
            if key in policy.values:
                self.running[key] = (policy.values[key], "policy")
            elif source == "policy":
                own = own or config.load()
                self.running[key] = (own.settings.model_dump(mode="json")[key], own.sources[key])


def describe(old: AgentPolicy, new: AgentPolicy, running: Mapping[str, tuple[Any, Source]]) -> list[str]:
    """A line per key the new policy changes: `policy for role web: throttle=5 (was 20 from file)`."""
    lines = []
    for key in sorted(set(old.values) | set(new.values)):
        if key in old.values and key in new.values and old.values[key] == new.values[key]:
            continue
        value, source = running.get(key, (None, "default"))
        if key not in new.values:
            was = _shown(old.values[key])
            lines.append(f"policy for role {old.roles.get(key, '?')}: {key} removed (was {was})")
            continue
        line = f"policy for role {new.roles.get(key, '?')}: {key}={_shown(new.values[key])}"
        if source in ("env", "option"):
            where = config.env_name(key) if source == "env" else "the command line"
            line += f" (not applied: {_shown(value)} from {where} wins over a policy)"
        else:
            line += f" (was {_shown(value)} from {source})"
        lines.append(line)
    return lines


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else json.dumps(value).strip('"')


def kept(settings: AgentSettings) -> dict[str, Any]:
    """The values of the policy the agent last received (kept in its state folder), or none."""
    policy = read(policy_path(settings))
    return dict(policy.values) if policy is not None else {}


def follow(
    settings: AgentSettings, sources: Mapping[str, Source], then: OnChange | None = None
) -> PolicyFollower | None:
    """The follower of this agent's policy (None when the agent has no engine_url and api_token): on each
    change a Recorder keeps and logs it, then `then` applies it (agents.live)."""
    if not settings.engine_url or not settings.api_token:
        return None
    timeout_s = min(TIMEOUT_S, max(settings.heartbeat_interval_s, 1.0))
    api = EngineApi(settings.engine_url, settings.api_token, settings.engine_ca, timeout_s=timeout_s)
    recorder = Recorder(settings, sources)

    def on_change(policy: AgentPolicy) -> None:
        recorder(policy)
        if then is not None:
            then(policy)

    return PolicyFollower(api, list(settings.roles), settings.heartbeat_interval_s, on_change, recorder.last)

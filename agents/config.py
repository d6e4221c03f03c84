"""The agent's settings: the seed's defaults, the agent configuration file, the environment and options.

Precedence, lowest to highest, is `SOURCES`. The merge itself is pydantic-settings' own
(`settings_customise_sources`); this module only says where the file is, edits it, and tells the operator
which source each value came from.
"""

from __future__ import annotations

import difflib
import os
import socket
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_origin

import tomli_w
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agents.identity import default_id
from common import defaults
from common import policy as common_policy
from common.errors import BadInput
from common.policy import AllowedPath
from common.settings import BrokerUrl, check_engine_url, redact

Source = Literal["default", "file", "policy", "env", "option"]
# Lowest to highest. `policy`: settings set centrally on the engine for every agent of a role (the seed's
# group policy, common.policy); they win over the file, and the host's environment and options over them.
SOURCES: tuple[Source, ...] = ("default", "file", "policy", "env", "option")

CONFIG_ENV = "CONVERGE_AGENT_CONFIG"
ENV_PREFIX = "CONVERGE_AGENT_"
SYSTEM_CONFIG = Path("/etc/converge/agent.toml")
USER_CONFIG = Path("~/.config/converge/agent.toml")


def default_state_dir() -> Path:
    """/var/lib/converge for root, else the user's state folder."""
    if os.geteuid() == 0:
        return Path("/var/lib/converge")
    return Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "converge"


# Settings whose values are secrets: `config show` and `config set` print `***` for them.
SECRETS = frozenset({"api_token"})


def _engine_url(url: str) -> str:
    return check_engine_url(url) if url else url


def config_path() -> Path:
    """The agent configuration file: $CONVERGE_AGENT_CONFIG, else the system file if any, else the user's."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env).expanduser()
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else USER_CONFIG.expanduser()


class ConfigError(BadInput):
    """A bad setting, key or configuration file; nothing was written."""


class AgentSettings(BaseSettings):
    """Runtime options of one agent process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    # Empty: `<hostname>-<role>[-<role>...]` (agents.identity.default_id), unique per host and role set.
    id: str = ""
    roles: list[str] = Field(default_factory=list)
    # Checked as the engine checks it (common.settings.check_broker_url), also by `config set`.
    broker_url: BrokerUrl = Field(default="redis://127.0.0.1:6379/0", validation_alias="CONVERGE_BROKER_URL")
    throttle: int = Field(default=20, ge=1, le=1000)
    # The pool grows with the work up to `throttle` processes and, once no step has arrived for
    # `pool_keepalive_s`, shrinks back to `pool_min` (Celery's autoscaler, agents.autoscale): an idle agent
    # stays small. `autoscale = false` keeps `throttle` processes at all times, as agents did before.
    autoscale: bool = True
    pool_min: int = Field(default=1, ge=1, le=1000)
    # How many nice levels the agent's main process (its consumer, heartbeat and reports) raises its own
    # priority by at start, where the host allows it (root, or CAP_SYS_NICE): busy steps then never keep
    # it waiting. Its pool processes, and so the steps, go back to the priority the agent started with.
    priority_boost: int = Field(default=10, ge=0, le=20)
    # Nice levels below the agent's starting priority that steps run at (the pool processes, and the
    # commands they start): for steps that must yield the CPU to the host's own services.
    step_nice: int = Field(default=0, ge=0, le=19)
    pool_keepalive_s: float = Field(default=10.0, gt=0)
    step_timeout_s: float = Field(default=defaults.STEP_TIMEOUT_S, gt=0)
    # After this many failed heartbeats in a row the agent ends its running steps (nobody can follow them).
    max_connection_failures: int = Field(default=defaults.MAX_CONNECTION_FAILURES, ge=1)
    heartbeat_interval_s: float = Field(default=defaults.HEARTBEAT_INTERVAL_S, gt=0)
    # The engine holds the agent lost, and runs its steps again, this long after its last heartbeat: longer
    # than the (max_connection_failures + 1) intervals the agent takes to end them itself.
    heartbeat_ttl_s: float = Field(default=defaults.HEARTBEAT_TTL_S, gt=0)
    # Where the agent keeps its outbox and the journal of its running steps (a folder per agent id).
    state_dir: Path = Field(default_factory=lambda: default_state_dir())
    progress_interval_s: float = Field(default=0.5, ge=0)
    visibility_timeout_s: float = Field(
        default=defaults.VISIBILITY_TIMEOUT_S, gt=0, validation_alias="CONVERGE_VISIBILITY_TIMEOUT_S"
    )
    loglevel: str = "INFO"
    # Text lines (Celery's format), or JSON lines for a log collector (agents.logs, common.logformat).
    log_format: Literal["text", "json"] = "text"
    # The folders the built-in kinds may act under (workflows.kinds.paths): a path outside them, or one that
    # leads out of them through a symlink, is refused. `/` keeps what agents did before the setting existed.
    allowed_paths: list[AllowedPath] = Field(default_factory=lambda: [Path("/")], min_length=1)
    # The engine's public signing key (PEM; the engine writes it to CONVERGE_HOME/keys/signing.pub): the agent
    # runs only the steps whose signature verifies against it. Without it the agent does not start.
    engine_key: Path | None = None
    # The engine's API (https://HOST:PORT), the CA its certificate is checked against, and this agent's own
    # token (role `agent`, named after its id): how a step fetches the credentials its resource lists. The
    # token is a secret: `config show` masks it.
    engine_url: Annotated[str, AfterValidator(_engine_url)] = ""
    engine_ca: Path | None = None
    api_token: str = ""
    # Celery task events, so that Flower sees every step. They cost a few publishes per step; an agent
    # that nobody watches with Flower can turn them off (Flower turns them back on when it runs).
    task_events: bool = True
    # Python files that replace or wrap step implementations and validators (agents.extensions,
    # docs/extensions.md); empty: `extensions` under state_dir. The execution policy (the seed's script
    # execution policy) decides which load: `restricted` only those owned by root or the agent's user and
    # writable by nobody else, `unrestricted` any.
    extensions_dir: Path | None = None
    execution_policy: Literal["restricted", "unrestricted"] = "restricted"
    # A capability document (XML or JSON) for `converge-agent capabilities` to show instead of the host's.
    capabilities_file: Path | None = None
    # The host name it enrolls with, which an import source names the machine by; empty: the OS's.
    host_name: str = ""

    @model_validator(mode="after")
    def _default_id(self) -> Self:
        if not self.id:
            self.id = default_id(socket.gethostname(), self.roles)
        return self

    @model_validator(mode="after")
    def _pool_min_within_throttle(self) -> Self:
        if self.pool_min > self.throttle:
            raise ValueError(
                f"pool_min ({self.pool_min}) must be at most throttle ({self.throttle}): the pool never has "
                "more processes than the steps it may run at once. Lower pool_min or raise throttle"
            )
        return self

    @model_validator(mode="after")
    def _ttl_outlasts_the_agent(self) -> Self:
        window = self.heartbeat_interval_s * (self.max_connection_failures + 1)
        if self.heartbeat_ttl_s <= window:
            raise ValueError(
                f"heartbeat_ttl_s ({self.heartbeat_ttl_s:g}) must be longer than heartbeat_interval_s x "
                f"(max_connection_failures + 1) = {window:g}s, the time an agent cut off from Redis takes to "
                "end its steps; otherwise the engine could run a step again while its first attempt still "
                "runs. Raise heartbeat_ttl_s or lower the others"
            )
        return self

    @property
    def agent_dir(self) -> Path:
        """This agent's own state folder."""
        return self.state_dir.expanduser() / self.id

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first, the reverse of SOURCES: options (init kwargs), env, the policy, the file; defaults
        # last. The policy is the one `load` is given, for the construction it makes only (a ContextVar).
        policy = InitSettingsSource(settings_cls, init_kwargs=_policy_layer.get() or {})
        file = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return init_settings, env_settings, policy, file


KEYS: tuple[str, ...] = tuple(AgentSettings.model_fields)


def env_name(key: str) -> str:
    """The environment variable that sets `key`."""
    alias = AgentSettings.model_fields[key].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + key.upper()


@dataclass(frozen=True)
class Resolved:
    """The effective settings, where each came from, and the file that was read."""

    settings: AgentSettings
    sources: dict[str, Source]
    file: Path
    ignored: list[str]  # keys in the file that are not settings
    # Why the policy `load` was given is not applied (it breaks a rule with the agent's own settings).
    policy_problem: str | None = None


# The policy layer of the one AgentSettings construction `load` makes (settings_customise_sources reads it).
_policy_layer: ContextVar[dict[str, Any] | None] = ContextVar("converge_agent_policy", default=None)


def load(options: dict[str, Any] | None = None, policy: Mapping[str, Any] | None = None) -> Resolved:
    """The agent's settings from every source; `options` (None values dropped) are the highest.

    `policy` (common.policy: keys it may not set are dropped) goes between the file and the environment.
    A policy that the agent's own settings make invalid (the heartbeat rule) is not applied: the settings
    are those without it, and `policy_problem` says why."""
    path = config_path()
    raw = read_file(path)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    applied = {k: v for k, v in (policy or {}).items() if k in common_policy.KEYS}
    if not applied:
        return _resolve(path, raw, given, {})
    try:
        return _resolve(path, raw, given, applied)
    except ConfigError as exc:
        without = _resolve(path, raw, given, {})  # the agent's own settings, bad or not
        return replace(without, policy_problem=f"the policy is not applied: {exc}")


def _resolve(path: Path, raw: dict[str, Any], given: dict[str, Any], policy: dict[str, Any]) -> Resolved:
    layers: dict[Source, Iterable[str]] = {"file": raw, "policy": policy, "env": env_values()}
    layers["option"] = given
    sources: dict[str, Source] = dict.fromkeys(KEYS, "default")
    for source in SOURCES:
        sources |= {key: source for key in layers.get(source, ()) if key in sources}
    token = _policy_layer.set(policy)
    try:
        settings = AgentSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources, path)) from exc
    finally:
        _policy_layer.reset(token)
    return Resolved(settings, sources, path, [key for key in raw if key not in sources])


def env_values() -> dict[str, Any]:
    """The settings the environment sets, by key."""
    by_alias = {env_name(key).lower(): key for key in KEYS} | {key.lower(): key for key in KEYS}
    return {by_alias[name.lower()]: value for name, value in EnvSettingsSource(AgentSettings)().items()}


def _explain(exc: ValidationError, sources: dict[str, Source], path: Path) -> str:
    where = {
        "file": f"in {path}",
        "policy": "from the policy of its role (`converge policy show`)",
        "env": "from the environment",
        "option": "from the command line",
    }
    by_alias = {env_name(key): key for key in KEYS}
    reasons = []
    for error in exc.errors():
        if not error["loc"]:  # a rule between settings
            reasons.append(error["msg"].removeprefix("Value error, "))
            continue
        key = by_alias.get(str(error["loc"][0]), str(error["loc"][0]))
        source = sources.get(key, "default")
        origin = env_name(key) if source == "env" else where.get(source, source)
        if source == "option":  # name the option itself: `converge-agent run --broker-url ...`
            origin = "--" + ("role" if key == "roles" else key.replace("_", "-"))
        reasons.append(f"{key}: {error['msg'].removeprefix('Value error, ')} ({origin})")
    return "invalid agent setting: " + "; ".join(reasons)


def read_file(path: Path) -> dict[str, Any]:
    """The file's table, or {} when there is no file. ConfigError if it cannot be read or parsed."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}; fix or remove the file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; set {CONFIG_ENV} to another file") from exc


def write_file(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically: a temporary file in the same directory, then os.replace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(tomli_w.dumps(data).encode())
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            # Keep the mode the operator chose; new files stay 0600 (mkstemp's): they may hold the broker URL.
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write {path}: {exc.strerror}; set {CONFIG_ENV} to a file you can write")


def check_key(key: str) -> str:
    if key in KEYS:
        return key
    near = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ConfigError(f"unknown setting {key!r}{hint} (known: {', '.join(KEYS)})")


@cache
def _adapter(key: str) -> TypeAdapter[Any]:
    field = AgentSettings.model_fields[key]
    annotation: Any = field.annotation
    if field.metadata:  # the constraints (ge, gt...) of the field, as pydantic keeps them
        annotation = Annotated.__class_getitem__((annotation, *field.metadata))  # type: ignore[attr-defined]
    return TypeAdapter(annotation)


def parse_pair(pair: str) -> tuple[str, Any]:
    """`KEY=VALUE` as a known key and a typed, validated value (int, float, bool, str or list)."""
    key, sep, text = pair.partition("=")
    if not sep:
        raise ConfigError(f"{pair!r}: expected KEY=VALUE")
    key = check_key(key.strip())
    value: Any = text.strip()
    if get_origin(AgentSettings.model_fields[key].annotation) is list:
        value = [item.strip() for item in value.split(",") if item.strip()]
    try:
        return key, _adapter(key).validate_python(value)
    except ValidationError as exc:
        shown = redact(text) if key.endswith("_url") else text  # never a password in a message
        raise ConfigError(f"{key}={shown}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from exc


@dataclass(frozen=True)
class Change:
    key: str
    old: Any  # None when the file did not hold the key
    new: Any


def check_file(path: Path, data: dict[str, Any]) -> None:
    """ConfigError unless `data`, as the file at `path`, makes valid settings with this environment: each
    value alone, and the rules between settings (pool_min within throttle, the heartbeat TTL's)."""
    env = env_values()
    sources: dict[str, Source] = dict.fromkeys(KEYS, "default")
    sources |= dict.fromkeys((key for key in data if key in sources), "file")
    sources |= dict.fromkeys(env, "env")
    # The file's values as options, under the environment's as `load` ranks them; every other key at its
    # default, not read from the file as it is now (whose keys a reset removes).
    given = {key: AgentSettings.model_fields[key].get_default(call_default_factory=True) for key in KEYS}
    given |= {key: value for key, value in data.items() if key in sources}
    try:
        AgentSettings(**{key: value for key, value in given.items() if key not in env})
    except ValidationError as exc:
        raise ConfigError(f"{_explain(exc, sources, path)}; nothing was written") from exc


def set_values(pairs: Iterable[str]) -> list[Change]:
    """Validate every pair, and the file they make, then write them all; nothing is written if one is bad."""
    values = dict(parse_pair(pair) for pair in pairs)
    path = config_path()
    data = read_file(path)
    changes = [Change(key, data.get(key), value) for key, value in values.items()]
    check_file(path, data | values)
    write_file(path, data | values)
    return changes


def reset_keys(keys: Iterable[str]) -> list[str]:
    """Remove `keys` from the file (every key when none are given); the keys that were there."""
    wanted = [check_key(key) for key in keys]
    path = config_path()
    data = read_file(path)
    removed = [key for key in (wanted or list(data)) if key in data]
    if removed:
        kept = {k: v for k, v in data.items() if k not in removed}
        check_file(path, kept)
        write_file(path, kept)
    return removed

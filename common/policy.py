"""Policies: agent settings set centrally on the engine for every agent of a role (the seed's group policy).

The engine and the agents never import each other, so what a policy may set lives here, in the layer both
use: the keys, their types and limits (the same as the agent's settings, agents.config.AgentSettings; a
unit test keeps the two in step), the keys a policy may not set and why, the rule the heartbeat settings
must keep together, and how the policies of an agent's several roles combine.

An agent applies a policy over its configuration file; its environment and command line still win.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from common import defaults, names
from common.errors import BadInput

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _allowed_path(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"{str(path)!r} is not an absolute path: write it from /")
    if ".." in path.parts:
        raise ValueError(f"{str(path)!r} contains `..`: write the folder it leads to")
    return path


def _log_level(level: str) -> str:
    if level.upper() not in LOG_LEVELS:
        raise ValueError(f"{level!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
    return level


AllowedPath = Annotated[Path, AfterValidator(_allowed_path)]


class PolicyValues(BaseModel):
    """What a policy may set: a subset of the agent's settings, with their types and limits."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    throttle: int | None = Field(default=None, ge=1, le=1000)
    step_timeout_s: float | None = Field(default=None, gt=0)
    max_connection_failures: int | None = Field(default=None, ge=1)
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    heartbeat_ttl_s: float | None = Field(default=None, gt=0)
    progress_interval_s: float | None = Field(default=None, ge=0)
    visibility_timeout_s: float | None = Field(default=None, gt=0)
    # Stricter than the agent's own setting: a bad level from the engine would stop every agent of a role.
    loglevel: Annotated[str, AfterValidator(_log_level)] | None = None
    allowed_paths: list[AllowedPath] | None = Field(default=None, min_length=1)
    task_events: bool | None = None
    extensions_dir: Path | None = None
    execution_policy: Literal["restricted", "unrestricted"] | None = None
    capabilities_file: Path | None = None
    autoscale: bool | None = None
    pool_min: int | None = Field(default=None, ge=1, le=1000)
    pool_keepalive_s: float | None = Field(default=None, gt=0)
    priority_boost: int | None = Field(default=None, ge=0, le=20)
    step_nice: int | None = Field(default=None, ge=0, le=19)


KEYS: tuple[str, ...] = tuple(PolicyValues.model_fields)

# The agent settings a policy may not set, and why: each is the agent's own, or how it reaches the engine
# and Redis (a wrong value from the engine would cut every agent of the role off both).
REFUSED: dict[str, str] = {
    "id": "each agent has its own id (its queue and its state folder are named after it)",
    "roles": "a policy is chosen by the agent's roles, so it cannot change them",
    "broker_url": "each agent has its own Redis user and password; a wrong URL would cut every agent of "
    "the role off Redis",
    "state_dir": "it is a folder of each host, and holds the agent's outbox and its last policy",
    "api_token": "it is each agent's own secret, and the engine never sends one",
    "engine_key": "it is what the agent checks the engine's steps against: it cannot come from the engine",
    "engine_url": "it is how the agent reaches the engine that sends it the policy",
    "engine_ca": "it is how the agent checks the engine that sends it the policy",
    "host_name": "it names the machine the agent runs on, by which an import admits it",
    "log_format": "it is what the host's log collector reads, set up with the host; it takes effect only at "
    "the agent's start",
}


def _refused(key: str) -> str:
    return (
        f"{key!r} cannot be set by a policy: {REFUSED[key]}; set it on the agent's host "
        f"(`converge-agent config set {key}=...`)"
    )


def check_role(role: str) -> str:
    """`role` if it can name a role (its queue); else BadInput."""
    if not names.valid_name(role):
        raise BadInput(f"invalid role {role!r}: use letters, digits, '.', '_' and '-'")
    return role


def check_key(key: str) -> str:
    """`key` if a policy may set it; else BadInput saying why not, or what was meant."""
    if key in KEYS:
        return key
    if key in REFUSED:
        raise BadInput(_refused(key))
    near = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise BadInput(f"unknown policy setting {key!r}{hint} (a policy may set: {', '.join(KEYS)})")


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values as JSON (paths as text), each checked against its type and limits; BadInput if one is bad.

    A value of None is refused: a policy removes a setting with `converge policy unset`."""
    for key, value in values.items():
        check_key(key)
        if value is None:
            raise BadInput(f"{key}: a policy cannot set null; remove it with `converge policy unset`")
    try:
        model = PolicyValues.model_validate(dict(values))
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            shown = values.get(key, "")
            reasons.append(f"{key}={shown}: {error['msg'].removeprefix('Value error, ')}")
        raise BadInput("invalid policy: " + "; ".join(reasons)) from None
    return model.model_dump(mode="json", exclude_unset=True)


def parse_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` texts as validated values; a list (allowed_paths) is written `a,b`."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise BadInput(f"{pair!r}: expected KEY=VALUE")
        key = check_key(key.strip())
        value: Any = text.strip()
        if _is_list(key):
            value = [item.strip() for item in value.split(",") if item.strip()]
        raw[key] = value
    return validate(raw)


def _is_list(key: str) -> bool:
    annotation = PolicyValues.model_fields[key].annotation
    return any(get_origin(arg) is list for arg in get_args(annotation))


def check_together(values: Mapping[str, Any]) -> None:
    """BadInput when the heartbeat settings of a policy break the agent's rule between them (as
    agents.config checks it): the TTL must outlast the time an agent cut off from Redis takes to end its
    steps. Settings the policy leaves out count at their defaults. A policy that sets both pool_min and
    throttle must keep pool_min within throttle (an agent whose own throttle is lower refuses it, saying
    why: agents.config.load's `policy_problem`)."""
    if "pool_min" in values and "throttle" in values and values["pool_min"] > values["throttle"]:
        raise BadInput(
            f"invalid policy: pool_min ({values['pool_min']}) must be at most throttle "
            f"({values['throttle']}): the pool never has more processes than the steps it may run at once"
        )
    heartbeat = ("heartbeat_interval_s", "max_connection_failures", "heartbeat_ttl_s")
    if not any(key in values for key in heartbeat):
        return
    interval = float(values.get("heartbeat_interval_s", defaults.HEARTBEAT_INTERVAL_S))
    failures = int(values.get("max_connection_failures", defaults.MAX_CONNECTION_FAILURES))
    ttl = float(values.get("heartbeat_ttl_s", defaults.HEARTBEAT_TTL_S))
    window = interval * (failures + 1)
    if ttl <= window:
        unset = [key for key in heartbeat if key not in values]
        counted = f" ({', '.join(unset)} at the default)" if unset else ""
        raise BadInput(
            f"invalid policy: heartbeat_ttl_s ({ttl:g}) must be longer than heartbeat_interval_s x "
            f"(max_connection_failures + 1) = {window:g}s{counted}, the time an agent cut off from Redis "
            "takes to end its steps; otherwise the engine could run a step again while its first attempt "
            "still runs. Raise heartbeat_ttl_s or lower the others in the same policy"
        )


class AgentPolicy(BaseModel):
    """The policy one agent applies: the values of its roles' policies, the role each came from, and
    the keys two of its roles set differently (the role listed first in the agent's roles wins)."""

    values: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, str] = Field(default_factory=dict)
    conflicts: list[str] = Field(default_factory=list)


def merge(by_role: Mapping[str, Mapping[str, Any]], roles: Sequence[str]) -> AgentPolicy:
    """The policy of an agent of `roles`, in the order the agent lists them: for a key that several of its
    roles set, the first role's value wins, and the others are named in `conflicts`."""
    merged = AgentPolicy()
    for role in dict.fromkeys(roles):
        for key, value in sorted(by_role.get(role, {}).items()):
            if key not in merged.values:
                merged.values[key] = value
                merged.roles[key] = role
            elif merged.values[key] != value:
                first = merged.roles[key]
                merged.conflicts.append(
                    f"{key}: role {first} sets {merged.values[key]!r}, role {role} sets {value!r}; "
                    f"{first}'s applies (it is listed first)"
                )
    return merged

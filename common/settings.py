"""Where things are: the settings of CLI.md, from options, the environment (CONVERGE_*) or defaults.

`load_settings` is the one way in: any bad setting becomes a `BadInput` naming the setting and where it came
from (`--store-url`, `CONVERGE_PLAN_TIMEOUT_S`), before anything starts. URLs in messages go through
`redact`, so that a broker or store password never reaches a terminal or a log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import defaults, redistls, sentinel
from common.errors import BadInput

ENV_PREFIX = "CONVERGE_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_BROKER_FORMS = (
    "redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://...[?ssl_ca_certs=/PATH/TO/ca.pem] (TLS), "
    "unix:///PATH/TO/redis.sock or "
    f"{sentinel.FORM} (Sentinel)"
)
_STORE_FORMS = "sqlite:///PATH/TO/converge.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"


def redact(url: str) -> str:
    """The URL with its password replaced by `***`: what a message or a log may show. A sentinel URL has
    several parts and passwords in its query too: each is hidden."""
    if sentinel.is_sentinel(url) or ";" in url:
        return sentinel.redact(url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL it can read: hide everything between the scheme and the host
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def check_broker_url(url: str) -> str:
    """`url` if it is a Redis URL (redis://, rediss://, unix:// or sentinel://), else ValueError saying what
    to write."""
    shown = redact(url)
    if sentinel.is_sentinel(url):
        try:
            sentinel.parse(url)
        except ValueError as exc:
            raise ValueError(f"{shown!r} is not a sentinel URL: {exc}") from None
        return url
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError(f"{shown!r} is not a Redis URL: expected {_BROKER_FORMS}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{shown!r} names no socket: expected unix:///PATH/TO/redis.sock")
        return url
    _check_port(parts, shown, _BROKER_FORMS)
    try:
        redistls.split(url)
    except ValueError as exc:
        raise ValueError(f"{shown!r}: {exc}") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"{shown!r}: the database {db!r} must be a number, e.g. redis://127.0.0.1:6379/0")
    return url


def check_store_url(url: str) -> str:
    """`url` if SQLAlchemy can parse it and knows its dialect, else ValueError saying why."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except NoSuchModuleError:  # a subclass of ArgumentError: first
        scheme = url.partition(":")[0]
        raise ValueError(f"{redact(url)!r}: unknown database {scheme!r}: expected {_STORE_FORMS}") from None
    except ArgumentError:
        raise ValueError(f"{redact(url)!r} is not a SQLAlchemy URL: expected {_STORE_FORMS}") from None
    return url


def check_engine_url(url: str) -> str:
    """`url` if it is an http:// or https:// address with a host, else ValueError saying why."""
    parts = urlsplit(url)
    form = "http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:8765"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact(url)!r} is not an engine address: expected {form}")
    _check_port(parts, redact(url), form)
    return url


def split_bind(bind: str) -> tuple[str, int]:
    """`host:port` (or `[ipv6]:port`) as a host and a port from 1 to 65535; ValueError saying why not."""
    host, colon, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{bind!r} is not HOST:PORT with a port from 1 to 65535: e.g. 127.0.0.1:8765")
    return host, int(port)


def _check_port(parts: SplitResult, shown: str, forms: str) -> None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ValueError(f"{shown!r}: the port must be a number from 1 to 65535: expected {forms}")


BrokerUrl = Annotated[str, AfterValidator(check_broker_url)]
"""A Redis URL, checked by `check_broker_url`: the engine's and the agents' broker_url."""


class Settings(BaseSettings):
    """Settings shared by the engine, the CLI and the agents. Build them with `load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    broker_url: BrokerUrl = "redis://127.0.0.1:6379/0"
    # Redis as the agents the engine admits reach it (another address than the engine's, behind a NAT...);
    # each gets its own user there. Empty: the engine's broker_url. Its credentials are never handed out.
    # Not `agent_broker_url`: its variable would be CONVERGE_AGENT_BROKER_URL, the agents' own broker_url.
    agents_broker_url: str = ""
    store_url: str = "sqlite:///./.converge/converge.db"
    # `converge engine run` migrates the store to this release's schema at start; off: it refuses a store
    # behind it, and the operator runs `converge engine migrate` (docs/operations.md, Upgrading the store).
    migrate_at_start: bool = True
    # `converge engine run` starts the engine's own agent (role `engine`: imports and catalogs,
    # engine.local_agent) as its child; off where the operator runs it as a service of its own.
    local_agent: bool = True
    # A PostgreSQL store's connection pool (a SQLite store ignores them): connections kept open, extra
    # ones opened under load, how long a request waits for one, and the age at which one is replaced.
    store_pool_size: int = Field(default=5, gt=0)
    store_max_overflow: int = Field(default=10, gt=0)
    store_pool_timeout_s: int = Field(default=30, gt=0)
    store_pool_recycle_s: int = Field(default=1800, gt=0)
    url: str = "http://127.0.0.1:8765"
    api_bind: str = "127.0.0.1:8765"
    # The operator token the CLI sends as `Authorization: Bearer` (`converge tokens create`).
    token: str | None = None
    # The engine's folder: its CA, its server certificate and their keys (`converge engine init`).
    home: Path = Path(".converge")
    # The key that encrypts the vault's credentials (engine.vault); empty: keys/vault.key under `home`. Kept
    # out of the store, so that a copy of the store reveals no credential.
    vault_key_file: Path | None = None
    # What the CLI trusts for the engine's HTTPS: the CA file, or the CA's SHA-256 fingerprint, or both.
    ca: Path | None = None
    ca_fingerprint: str | None = None
    # Serve plain HTTP: only on a loopback address (as `converge up` does); anywhere else the engine refuses.
    insecure_http: bool = False
    # The largest request body the API reads; a larger one is answered 413 before it is read.
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # Longer than any step may run: kombu re-delivers unacknowledged messages older than this.
    visibility_timeout_s: float = Field(default=defaults.VISIBILITY_TIMEOUT_S, gt=0)
    # How long `plan` waits for the agents' observations.
    plan_timeout_s: float = Field(default=30.0, gt=0)
    # The no-progress timeout of a step that sets none, when its agent announced none either.
    step_timeout_s: float = Field(default=defaults.STEP_TIMEOUT_S, gt=0)
    # Succeeded workflows stay in history this long; the engine prunes older ones every hour.
    history_retention_days: float = Field(default=30.0, ge=0)
    # Failed, aborted and cancelled workflows stay this long after they finished (a retry makes one running
    # again); the same hourly prune deletes older ones.
    failed_retention_days: float = Field(default=7.0, ge=0)
    # How often the engine's watchdog looks for timeouts, due retries and stopped agents.
    watchdog_interval_s: float = Field(default=0.5, gt=0)
    # This engine's id among the engines that share one Redis and store; empty: its host name and API port.
    engine_id: str = ""
    # The TTL of the lease of the singleton duties (engine.duties): how long after an engine that holds
    # them dies another takes them over; a clean stop hands them over at once.
    duties_ttl_s: float = Field(default=10.0, ge=1)
    log_level: str = "INFO"
    # How the engine writes its log: text lines, or JSON lines for a log collector (common.logformat).
    log_format: Literal["text", "json"] = "text"

    @field_validator("agents_broker_url")
    @classmethod
    def _agents_broker_url(cls, url: str) -> str:
        return check_broker_url(url) if url else url

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, url: str) -> str:
        return check_store_url(url)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_engine_url(url)

    @field_validator("api_bind")
    @classmethod
    def _api_bind(cls, bind: str) -> str:
        split_bind(bind)
        return bind

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, engine_id: str) -> str:
        if engine_id and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}", engine_id):
            raise ValueError(
                f"{engine_id!r} is not an engine id: use up to 200 letters, digits and _.:@- "
                "(starting with a letter or digit), or leave it empty for the host name and API port"
            )
        return engine_id

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"{level!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
        return level.upper()


def load_settings(**options: Any) -> Settings:
    """The settings from `options` (None means not given), else the environment, else the defaults.

    Raises BadInput naming every bad setting and where it came from, before anything has started.
    """
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return Settings.model_validate(given)
    except ValidationError as exc:
        raise BadInput(explain(exc, given)) from None


def explain(exc: ValidationError, options: Mapping[str, Any] | None = None) -> str:
    """One line per bad setting: where it came from, what is wrong, and what to do."""
    reasons = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "settings"
        origin = origin_of(key, options or {})
        if error["type"] == "value_error":
            reason = str(error["ctx"]["error"])
        else:
            shown = redact(str(error["input"])) if key.endswith("url") else repr(error["input"])
            reason = f"{shown}: {error['msg'][:1].lower()}{error['msg'][1:]}"
        reasons.append(f"invalid setting {origin}: {reason}")
    return "; ".join(reasons)


def origin_of(key: str, options: Mapping[str, Any]) -> str:
    """Where a setting came from: its command-line option, its environment variable, or the default."""
    if key in options:
        return "--" + key.replace("_", "-")
    env = ENV_PREFIX + key.upper()
    if env in {name.upper() for name in os.environ}:
        return env
    return f"{key} (default)"

"""Where things are: the settings of CLI.md, from options, the environment (CONVERGE_*) or defaults."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the engine, the CLI and the agents."""

    model_config = SettingsConfigDict(env_prefix="CONVERGE_", extra="ignore")

    broker_url: str = "redis://127.0.0.1:6379/0"
    store_url: str = "sqlite:///./.converge/converge.db"
    url: str = "http://127.0.0.1:8765"
    api_bind: str = "127.0.0.1:8765"
    token: str | None = None
    # Longer than any step may run: kombu re-delivers unacknowledged messages older than this.
    visibility_timeout_s: float = 4 * 3600
    # How long `plan` waits for the agents' observations.
    plan_timeout_s: float = 30.0
    # The no-progress timeout of a step that sets none, when its agent announced none either.
    step_timeout_s: float = 3600.0
    # Succeeded workflows stay in history this long; the engine prunes older ones every hour.
    history_retention_days: float = 30.0
    # How often the engine's watchdog looks for timeouts, due retries and stopped agents.
    watchdog_interval_s: float = 0.5
    log_level: str = "INFO"

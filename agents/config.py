"""The agent's settings, with the seed's defaults; overridden by CONVERGE_AGENT_* and by options."""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    """Runtime options of one agent process."""

    model_config = SettingsConfigDict(env_prefix="CONVERGE_AGENT_", extra="ignore", populate_by_name=True)

    id: str = Field(default_factory=socket.gethostname)
    roles: list[str] = Field(default_factory=list)
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="CONVERGE_BROKER_URL")
    throttle: int = Field(default=20, ge=1, le=1000)
    step_timeout_s: float = Field(default=3600.0, gt=0)
    max_connection_failures: int = Field(default=5, ge=1)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=10.0, gt=0)
    progress_interval_s: float = Field(default=0.5, ge=0)
    visibility_timeout_s: float = Field(
        default=4 * 3600, gt=0, validation_alias="CONVERGE_VISIBILITY_TIMEOUT_S"
    )
    loglevel: str = "INFO"
    # Celery task events, so that Flower sees every step. They cost a few publishes per step; an agent
    # that nobody watches with Flower can turn them off (Flower turns them back on when it runs).
    task_events: bool = True

"""The agent's Celery worker: prefork, concurrency = throttle, its role queues and its own queue."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from celery import Celery, signals

from agents.config import AgentSettings
from agents.heartbeat import Heartbeat, agent_info
from agents.reporter import Reporter
from agents.runner import StepRunner
from common import names
from common.celery_app import make_app, queue
from common.errors import Unreachable
from common.models import StepMessage
from workflows.registry import default_registry


def converge_version() -> str:
    try:
        return version("converge")
    except PackageNotFoundError:
        return "0+unknown"


def queues_for(settings: AgentSettings) -> list[str]:
    return [names.role_queue(role) for role in settings.roles] + [names.agent_queue(settings.id)]


def build_app(settings: AgentSettings) -> Celery:
    """The agent's Celery app with the step task bound to this agent's runner."""
    app = make_app(settings.broker_url, visibility_timeout_s=settings.visibility_timeout_s)
    runner = StepRunner(
        settings.id,
        settings.roles,
        default_registry(),
        Reporter(settings.broker_url, settings.id),
        settings.progress_interval_s,
        settings.visibility_timeout_s,
        settings.step_timeout_s,
    )

    @app.task(name=names.STEP_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def step(**fields: Any) -> None:
        runner.run(StepMessage.model_validate(fields))

    app.conf.task_queues = [queue(q) for q in queues_for(settings)]
    if settings.broker_url.startswith("redis://"):
        app.conf.broker_transport = "agents.transport:Transport"
    return app


def run(settings: AgentSettings) -> None:
    """Run the agent until it is stopped (SIGTERM or Ctrl-C). Raises Unreachable if Redis is not there."""
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise Unreachable(f"cannot reach Redis at {settings.broker_url}: {exc}") from exc
    app = build_app(settings)
    heartbeat = Heartbeat(
        client,
        agent_info(settings, converge_version()),
        settings.heartbeat_interval_s,
        settings.heartbeat_ttl_s,
    )

    def on_ready(**_: Any) -> None:
        heartbeat.start()

    def on_shutdown(**_: Any) -> None:
        heartbeat.stop()

    if settings.loglevel.upper() != "DEBUG":
        # Celery logs two lines per task ("received", "succeeded in"); every step's story is already in
        # the store, `converge workflows show` and Flower. Failures and Converge's own lines still log.
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.loglevel}",
            "--pool=prefork",
            f"--concurrency={settings.throttle}",
            f"--queues={','.join(queues_for(settings))}",
            f"--hostname={settings.id}@%h",
            *(["--task-events"] if settings.task_events else []),
            "--without-gossip",
            "--without-mingle",
        ]
    )

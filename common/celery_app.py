"""The one Celery app factory. Engine and agents share its settings; only the agents register the task."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from common import defaults, names, redistls, sentinel

# The transport of a sentinel broker URL (the agents replace it with theirs, which keeps their fixes).
SENTINEL_TRANSPORT = "common.sentinel_transport:Transport"


def make_app(
    broker_url: str,
    *,
    visibility_timeout_s: float = defaults.VISIBILITY_TIMEOUT_S,
    name: str = "converge",
    agent_id: str | None = None,
) -> Celery:
    """A Celery app on the Redis broker, tuned for steps: JSON only, late ack, prefetch 1, no results.

    Steps report through Converge's status stream, so Celery's result backend stays off: it would cost a
    subscription per task. The visibility timeout is longer than any step may run (kombu re-delivers
    unacknowledged messages older than it); the agent also drops deliveries of attempts no longer current.
    An agent's app keeps the messages it took in keys of its own (`names.unacked_keys`).
    """
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout_s,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }
    if sentinel.is_sentinel(broker_url):  # one sentinel for Celery, all of them for the transport
        parsed = sentinel.parse(broker_url)
        broker_url = parsed.celery_url()
        transport.update(parsed.transport_options())
    # rediss://: the TLS parameters as `broker_use_ssl`, read once (common.redistls); kombu's own reading of
    # the URL would connect unchecked when it names none, and skip TLS for the agents' own transport.
    broker_url, tls = redistls.split(broker_url)
    app = Celery(name, broker=broker_url, set_as_current=False)
    if tls:
        app.conf.broker_use_ssl = tls
    if agent_id is not None:
        transport.update(names.unacked_keys(agent_id))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        # The engine sends no "task-sent" event: a publish per step that Flower does not need, since it
        # learns of a task from the worker's "task-received".
        worker_send_task_events=False,  # the agent decides: `task_events` in its settings
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # A lost broker connection does not cancel running steps: they report through the status stream
        # and the agent's own connection-failure limit decides when to end them.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_default_queue=names.ENGINE_QUEUE,
        task_create_missing_queues=True,
        enable_utc=True,
    )
    if sentinel.is_sentinel(broker_url):
        app.conf.broker_transport = SENTINEL_TRANSPORT
    return app


def queue(name: str) -> Queue:
    """A durable direct queue named `name`, routed by its own name."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]

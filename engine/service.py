"""`converge engine run`: the API, the dispatcher and the status ingester in one process."""

from __future__ import annotations

import logging
import threading

import redis
import uvicorn

from common.celery_app import make_app
from common.errors import Unreachable
from common.settings import Settings, redact, split_bind
from common.store import open_store
from engine.api import create_api
from engine.core import Engine
from engine.dispatcher import Dispatcher
from engine.ingest import Ingester
from engine.watchdog import Watchdog
from workflows.registry import default_registry

log = logging.getLogger("converge.engine")


def connect_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise Unreachable(
            f"cannot reach Redis at {redact(url)} ({exc}): start it, or point CONVERGE_BROKER_URL "
            "(or --broker-url) at it"
        ) from exc
    return client


def build(settings: Settings) -> Engine:
    store = open_store(settings.store_url)
    client = connect_redis(settings.broker_url)
    app = make_app(settings.broker_url, visibility_timeout_s=settings.visibility_timeout_s)
    dispatcher = Dispatcher(app, client, attempt_ttl_s=settings.visibility_timeout_s)
    return Engine(settings, store, client, dispatcher, default_registry())


def run(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. Steps left `queued` by a previous run are published again first.

    `settings` come from `load_settings`, checked before anything starts.
    """
    host, port = split_bind(settings.api_bind)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    engine = build(settings)
    requeued = engine.republish_queued()
    if requeued:
        log.info("published %d steps left queued by a previous run", requeued)
    ingester = Ingester(engine.client, engine.store, engine.act)
    watchdog = Watchdog(engine)
    threads = [
        threading.Thread(target=ingester.run, name="converge-ingest", daemon=True),
        threading.Thread(target=watchdog.run, name="converge-watchdog", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        uvicorn.run(create_api(engine), host=host, port=port, log_level="warning")
    finally:
        ingester.stop()
        watchdog.stop()
        for thread in threads:
            thread.join(timeout=5)
        engine.store.close()

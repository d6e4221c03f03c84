"""The raw Celery baseline: no-op tasks on the same Redis, run by a worker with the agents' settings.

The harness starts the worker as
`celery -A tests.bench.celery_baseline worker -P prefork -c 20 --prefetch-multiplier 1 -O fair`
with BENCH_BROKER_URL pointing at the benchmark's private Redis. Like an agent: JSON only, late ack,
prefetch 1. Unlike an agent, results go to a result backend (the same Redis) so that the client can
`get()` them; `bench.noop_counted` is the variant without a result backend, counting its runs in a key.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

QUEUE = "bench.baseline"
NOOP = "bench.noop"
NOOP_COUNTED = "bench.noop_counted"


def make_baseline_app(broker_url: str) -> Celery:
    """The baseline app, for the worker (module `app`) and for the benchmark's client side."""
    app = Celery("bench", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        enable_utc=True,
    )
    counter = _Counter(broker_url)

    @app.task(name=NOOP, shared=False)  # type: ignore[untyped-decorator]
    def noop() -> None:
        """Does nothing; its (empty) result goes to the result backend."""

    @app.task(name=NOOP_COUNTED, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def noop_counted(counter_key: str) -> None:
        """Does nothing but count itself: completion without a result backend."""
        counter.incr(counter_key)

    return app


class _Counter:
    """One Redis connection per worker child: prefork children fork after the app is imported."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._pid = 0

    def incr(self, key: str) -> None:
        if self._client is None or self._pid != os.getpid():
            self._client = redis.Redis.from_url(self.url)
            self._pid = os.getpid()
        self._client.incr(key)


def __getattr__(name: str) -> Celery:
    """`celery -A tests.bench.celery_baseline` finds `app` here; built on first use, so that importing
    `make_baseline_app` in the benchmark does not register the task names twice."""
    if name != "app":
        raise AttributeError(name)
    app = make_baseline_app(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
    globals()["app"] = app
    return app

"""The agent's pool autoscaler: Celery's, with its keepalive from the agent's settings.

Celery's `Autoscaler` takes its keepalive from `AUTOSCALE_KEEPALIVE` in the environment, read once at import
as a default argument; the agent's is the setting `pool_keepalive_s`, which `agents.worker` puts in the app's
configuration under `KEEPALIVE_CONF` before the worker builds its autoscaler. Celery grows the pool as steps
are reserved (up to the throttle, the prefetch count caps what is reserved) and shrinks it to `pool_min`
once no step has arrived for a keepalive.

One change to Celery's: processes above the maximum, left running when the throttle was lowered while every
process was busy, are ended as soon as they are idle rather than a keepalive later.
"""

from __future__ import annotations

from typing import Any

from celery.worker.autoscale import Autoscaler as CeleryAutoscaler

KEEPALIVE_CONF = "converge_pool_keepalive_s"
DEFAULT_KEEPALIVE_S = 10.0


class Autoscaler(CeleryAutoscaler):  # type: ignore[misc]
    def __init__(
        self, pool: Any, max_concurrency: int, min_concurrency: int = 0, worker: Any = None, **kwargs: Any
    ) -> None:
        keepalive = DEFAULT_KEEPALIVE_S
        if worker is not None:
            keepalive = float(worker.app.conf.get(KEEPALIVE_CONF) or DEFAULT_KEEPALIVE_S)
        kwargs["keepalive"] = keepalive
        super().__init__(pool, max_concurrency, min_concurrency, worker=worker, **kwargs)

    def _maybe_scale(self, req: Any = None) -> bool | None:
        excess = self.processes - self.max_concurrency
        if excess > 0:
            self._shrink(excess)  # only idle processes go; Celery logs and waits when all are busy
            return True
        result: bool | None = super()._maybe_scale(req)
        return result

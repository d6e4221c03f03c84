"""The agent's autoscaler takes its keepalive from the settings and never keeps more processes than the
throttle; its consumer reserves up to the throttle whatever the pool's size of the moment."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agents.autoscale import KEEPALIVE_CONF, Autoscaler
from agents.consumer import Consumer


class FakePool:
    def __init__(self, processes: int, busy: int = 0) -> None:
        self.num_processes = processes
        self.busy = busy

    def shrink(self, n: int) -> None:
        idle = self.num_processes - self.busy
        self.num_processes -= min(n, idle)
        if n > idle:
            raise ValueError("Can't shrink pool. All processes busy!")

    def grow(self, n: int) -> None:
        self.num_processes += n

    def maintain_pool(self) -> None:
        pass


def worker(keepalive: Any) -> SimpleNamespace:
    return SimpleNamespace(app=SimpleNamespace(conf={KEEPALIVE_CONF: keepalive}))


def test_the_keepalive_comes_from_the_app_configuration_not_the_environment() -> None:
    assert Autoscaler(FakePool(1), 20, 1, worker=worker(2.5)).keepalive == 2.5
    assert Autoscaler(FakePool(1), 20, 1, worker=worker(None)).keepalive == 10.0


def test_processes_above_a_lowered_maximum_end_as_soon_as_they_are_idle() -> None:
    pool = FakePool(20, busy=12)
    scaler = Autoscaler(pool, 5, 1, worker=worker(30))
    scaler.maybe_scale()
    assert pool.num_processes == 12  # the idle ones went at once, not a keepalive later
    pool.busy = 3
    scaler.maybe_scale()
    assert pool.num_processes == 5


def test_the_consumer_reserves_up_to_the_autoscalers_maximum_while_the_pool_is_small() -> None:
    consumer = Consumer.__new__(Consumer)
    consumer.prefetch_multiplier = 1
    consumer.pool = FakePool(1)
    consumer.controller = SimpleNamespace(max_concurrency=20)
    assert consumer.max_prefetch_count == 20
    consumer.controller = SimpleNamespace(max_concurrency=None)  # a fixed pool: its size
    assert consumer.max_prefetch_count == 1

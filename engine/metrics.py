"""`GET /metrics`: the engine's figures in Prometheus' text format, through prometheus-client.

Every figure is read at scrape time from where it lives: steps, workflows and step run times from the store,
agents, queues, leaderships and the status stream from Redis. Nothing is counted in the engine's memory, so
every engine that shares a store answers the same, a restart loses nothing, and a scrape matches what
`converge workflows` and `converge agents list` show. The collector has a registry of its own: not the
process-wide default, which would add the Python runtime's own figures and whatever else registers there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, get_args

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from common import names
from common.models import AgentState, StepState, WorkflowState
from common.store import Store
from engine import compliance
from engine.fleet import list_agents

# Step run times, in seconds: from a no-op step to a long package install.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
ROLE_QUEUES = names.role_queue("*")
PRIORITY_SEP = "\x06\x16"  # kombu's priority lists beside a queue: `<queue>\x06\x16<priority>`
SCAN_COUNT = 1000


class EngineCollector(Collector):
    """Reads the store and Redis on each scrape."""

    def __init__(self, store: Store, client: redis.Redis) -> None:
        self.store = store
        self.client = client

    def collect(self) -> Iterator[Metric]:
        yield self._steps()
        yield self._durations()
        yield self._workflows()
        yield self._agents()
        yield self._queues()
        yield self._leader_changes()
        yield self._compliance()
        yield from self._ingest()

    def _steps(self) -> Metric:
        family = GaugeMetricFamily(
            "converge_steps", "Steps in the store, by state and kind", labels=["state", "kind"]
        )
        counts = self.store.step_counts()
        for kind in sorted({kind for _, kind in counts}):
            for state in StepState:
                family.add_metric([state.value, kind], counts.get((state.value, kind), 0))
        return family

    def _durations(self) -> Metric:
        family = HistogramMetricFamily(
            "converge_step_duration_seconds",
            "Run time of finished steps (started to finished), by kind and final state",
            labels=["kind", "state"],
        )
        for (kind, state), (cumulative, count, total) in sorted(
            self.store.step_durations(DURATION_BUCKETS).items()
        ):
            buckets = [(_bound(b), n) for b, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
            family.add_metric([kind, state], [*buckets, ("+Inf", count)], total)
        return family

    def _workflows(self) -> Metric:
        family = GaugeMetricFamily(
            "converge_workflows", "Workflows in the store (active and history), by state", labels=["state"]
        )
        counts = self.store.workflow_counts()
        for state in WorkflowState:
            family.add_metric([state.value], counts.get(state.value, 0))
        return family

    def _agents(self) -> Metric:
        family = GaugeMetricFamily("converge_agents", "Agents, by state", labels=["state"])
        views = list_agents(self.client, self.store.running_by_agent(), self.store.enrollments())
        for state in get_args(AgentState):
            family.add_metric([state], sum(1 for view in views if view.state == state))
        return family

    def _queues(self) -> Metric:
        family = GaugeMetricFamily(
            "converge_queue_depth",
            "Step messages waiting on a role's queue (a scope's queue is its own), priorities summed",
            labels=["role", "queue"],
        )
        lists = sorted(_text(key) for key in self.client.scan_iter(ROLE_QUEUES, SCAN_COUNT, _type="list"))
        pipe = self.client.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        depth: dict[str, int] = {}
        for key, n in zip(lists, pipe.execute(), strict=True):
            queue = key.split(PRIORITY_SEP, 1)[0]
            depth[queue] = depth.get(queue, 0) + int(n)
        for queue, n in sorted(depth.items()):
            family.add_metric([queue.removeprefix(ROLE_QUEUES[:-1]).split(".", 1)[0], queue], n)
        return family

    def _leader_changes(self) -> Metric:
        family = CounterMetricFamily(
            "converge_leader_changes",
            "Times a role's leadership changed hands (its fencing epoch)",
            labels=["role"],
        )
        keys = sorted(_text(key) for key in self.client.scan_iter(names.epoch_key("*"), SCAN_COUNT))
        values = self.client.mget(keys) if keys else []
        prefix = names.epoch_key("")
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                family.add_metric([key.removeprefix(prefix)], int(value))
        return family

    def _compliance(self) -> Metric:
        family = GaugeMetricFamily(
            "converge_drifted_resources",
            "Resources the last check of a scheduled desired state found drifted (converge compliance)",
            labels=["desired_state", "mode"],
        )
        for record in self.store.schedules():
            family.add_metric([record.name, record.mode], compliance.drifted(record.report))
        return family

    def _ingest(self) -> Iterable[Metric]:
        """How far the recording of status reports is behind: entries not yet recorded, and the age of the
        oldest of them (stream ids are the milliseconds they were added at)."""
        backlog, oldest = ingest_backlog(self.client)
        yield GaugeMetricFamily(
            "converge_ingest_backlog",
            "Status reports on the stream not yet recorded in the store",
            value=backlog,
        )
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "converge_ingest_lag_seconds",
            "Age of the oldest status report not yet recorded in the store (0: none is waiting)",
            value=age,
        )


def ingest_backlog(client: redis.Redis) -> tuple[int, float | None]:
    """Entries the engine's group has not acknowledged (pending or not yet read), and when the oldest of
    them was added (seconds since the epoch), or None when none waits."""
    try:
        groups: list[dict[str, Any]] = client.xinfo_groups(names.STATUS_STREAM)
    except redis.ResponseError:  # no stream yet: nothing was ever reported
        return 0, None
    group = next((g for g in groups if _text(g["name"]) == names.STATUS_GROUP), None)
    if group is None:
        return int(client.xlen(names.STATUS_STREAM)), None
    pending: dict[str, Any] = client.xpending(names.STATUS_STREAM, names.STATUS_GROUP)
    unread: list[Any] = client.xrange(  # type: ignore[assignment]
        names.STATUS_STREAM, min="(" + _text(group["last-delivered-id"]), count=1
    )
    firsts = [_text(pending["min"])] if pending.get("min") else []
    firsts += [_text(unread[0][0])] if unread else []
    lag = group.get("lag")  # None when Redis cannot tell (entries were deleted): count the one seen
    backlog = int(pending.get("pending", 0)) + (int(lag) if lag is not None else len(unread))
    oldest = min((int(first.split("-", 1)[0]) / 1000 for first in firsts), default=None)
    return backlog, oldest


def registry(store: Store, client: redis.Redis) -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=False)
    made.register(EngineCollector(store, client))
    return made


def _bound(value: float) -> str:
    return repr(float(value))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

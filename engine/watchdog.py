"""The watchdog: the engine's level-triggered repairs, decided from the store, not from hoping.

Every interval it publishes the queued steps again if Redis lost them, times out steps that stopped
reporting (so this holds even when the agent running them died), fails as lost the steps of an agent whose
heartbeat stopped (their retry policy then runs them again at once, on another agent of the role), ends the
cancellation of steps whose agent is gone, publishes retries whose backoff has passed and the steps held
for an agent that is alive again, and prunes old history and old failed, aborted and cancelled workflows.

With several engines, every engine publishes again what it failed to publish and what it holds for an agent
(both in its own memory); the rest runs only on the engine that holds the singleton duties (engine.duties).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from common import defaults, names
from common.models import ENGINE_SEQ, AgentInfo, StatusEvent, StepState, WorkflowState
from common.store import StaleStep
from engine.core import Engine
from engine.fleet import alive_ids, read_agents

log = logging.getLogger("converge.engine")

# The agent's own watcher ends a silent step at its timeout; the engine steps in only after this margin.
AGENT_MARGIN_S = 5.0
PRUNE_EVERY_S = 3600.0


class Watchdog:
    def __init__(self, engine: Engine, leading: Callable[[], bool] = lambda: True) -> None:
        self.engine = engine
        self.leading = leading  # whether this engine holds the singleton duties now
        self._stop = threading.Event()
        self._last_prune = 0.0
        # An agent is held lost only after a whole TTL during which its heartbeat could have been seen:
        # counted from the engine's start, and again from the moment Redis lost its data (heartbeats too).
        self._watching_since = time.time()
        self._bad_records: set[bytes | str] = set()  # logged once, not on every pass

    def run(self) -> None:
        while not self._stop.wait(self.engine.settings.watchdog_interval_s):
            try:
                self.run_once(time.time())
            except redis.RedisError as exc:
                log.warning("watchdog: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("watchdog pass failed; retrying")

    def run_once(self, now: float) -> None:
        engine = self.engine
        engine.republish_if_wanted()  # a publish failed (Redis was away): its steps wait in the store
        engine.dispatcher.release_held()  # steps pinned to an agent that is alive again
        if not self.leading():
            return
        if not engine.client.exists(names.BROKER_MARK):
            self._watching_since = now
            republished = engine.republish_queued()
            log.warning("Redis lost its data (restarted?): published %d queued steps again", republished)
        running = engine.store.started()
        if running:
            events = self._verdicts(running, now)
            if events:
                engine.act(engine.store.record(events))
                # a lost agent that comes back (a paused process) ends what it still runs of these attempts
                engine.dispatcher.stop([(e.step_id, e.attempt) for e in events if e.lost])
        due = engine.store.due_retries(now)  # after the verdicts: a lost step's next attempt goes out now
        if due:
            engine.dispatcher.publish(due)
        if now - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = now
            succeeded, unsucceeded = engine.expire(now)
            if succeeded:
                log.info("pruned %d workflows from history", succeeded)
            if unsucceeded:
                log.info("pruned %d failed, aborted or cancelled workflows past their retention", unsucceeded)

    def _verdicts(self, running: list[StaleStep], now: float) -> list[StatusEvent]:
        client = self.engine.client
        agents = {info.id: info for info in read_agents(client, self._bad_records)}
        alive = alive_ids(client, {step.agent for step in running if step.agent})
        events = []
        for step in running:
            info = agents.get(step.agent or "")
            limit = step.timeout_s or (info.step_timeout_s if info else self.engine.settings.step_timeout_s)
            silent = now - (step.last_report_at or now)
            if silent > limit + AGENT_MARGIN_S:
                events.append(
                    _event(step, StepState.TIMED_OUT, f"no progress for {silent:.0f}s (limit {limit:g}s)")
                )
            elif step.agent in alive:
                continue
            elif step.workflow_state == WorkflowState.CANCELLING:
                events.append(_event(step, StepState.CANCELLED, f"cancelled; agent {step.agent} is gone"))
            elif now - self._watching_since >= (ttl := _ttl(info)):
                error = f"worker lost: agent {step.agent} sent no heartbeat for {ttl:g}s"
                events.append(_event(step, StepState.FAILED, error, retryable=True, lost=True))
        return events

    def stop(self) -> None:
        self._stop.set()


def _ttl(info: AgentInfo | None) -> float:
    return (info.heartbeat_ttl_s if info else None) or defaults.HEARTBEAT_TTL_S


def _event(step: StaleStep, state: StepState, error: str, **fields: bool) -> StatusEvent:
    return StatusEvent(
        workflow_id=step.workflow_id,
        step_id=step.id,
        attempt=step.attempt,
        seq=ENGINE_SEQ,
        state=state,
        agent=step.agent or "engine",
        at=datetime.now(UTC),
        error=error,
        **fields,
    )

"""The watchdog: the engine's level-triggered repairs, decided from the store, not from hoping.

Every interval it publishes the queued steps again if Redis lost them, publishes retries whose backoff
has passed, times out steps that stopped reporting (so this holds even when the agent running them
died), ends the cancellation of steps whose agent is gone, and prunes old history.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import redis

from common import names
from common.models import AgentInfo, StatusEvent, StepState, WorkflowState
from common.store import StaleStep
from engine.core import Engine

log = logging.getLogger("converge.engine")

# Engine-made events come after anything the agent could still send for that attempt.
ENGINE_SEQ = 2**31 - 1
# The agent's own watcher ends a silent step at its timeout; the engine steps in only after this margin.
AGENT_MARGIN_S = 5.0
PRUNE_EVERY_S = 3600.0


class Watchdog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._stop = threading.Event()
        self._last_prune = 0.0

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
        if not engine.client.exists(names.BROKER_MARK):
            republished = engine.republish_queued()
            log.warning("Redis lost its data (restarted?): published %d queued steps again", republished)
        due = engine.store.due_retries(now)
        if due:
            engine.dispatcher.publish(due)
        running = engine.store.started()
        if running:
            events = self._verdicts(running, now)
            if events:
                engine.act(engine.store.record(events))
        if now - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = now
            pruned = engine.prune()
            if pruned:
                log.info("pruned %d workflows from history", pruned)

    def _verdicts(self, running: list[StaleStep], now: float) -> list[StatusEvent]:
        agents = self._agents()
        events = []
        for step in running:
            info = agents.get(step.agent or "")
            limit = step.timeout_s or (info.step_timeout_s if info else self.engine.settings.step_timeout_s)
            silent = now - (step.last_report_at or now)
            if silent > limit + AGENT_MARGIN_S:
                events.append(
                    _event(step, StepState.TIMED_OUT, f"no progress for {silent:.0f}s (limit {limit:g}s)")
                )
            elif step.workflow_state == WorkflowState.CANCELLING and not self._alive(step.agent):
                events.append(_event(step, StepState.CANCELLED, f"cancelled; agent {step.agent} is gone"))
        return events

    def _agents(self) -> dict[str, AgentInfo]:
        raw = self.engine.client.hvals(names.AGENTS_HASH)
        return {info.id: info for info in (AgentInfo.model_validate_json(r) for r in raw)}

    def _alive(self, agent_id: str | None) -> bool:
        return agent_id is not None and bool(self.engine.client.exists(names.agent_alive_key(agent_id)))

    def stop(self) -> None:
        self._stop.set()


def _event(step: StaleStep, state: StepState, error: str) -> StatusEvent:
    return StatusEvent(
        workflow_id=step.workflow_id,
        step_id=step.id,
        attempt=step.attempt,
        seq=ENGINE_SEQ,
        state=state,
        agent=step.agent or "engine",
        at=datetime.now(UTC),
        error=error,
    )

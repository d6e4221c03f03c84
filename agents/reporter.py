"""Status events from a step to the engine, on the Redis status stream."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis.typing import EncodableT, FieldT

from agents.connection import fail_fast
from agents.engine_api import EngineApi, EngineApiError
from common import names, signing
from common.models import CheckResult, StepMessage
from workflows.context import EVERYWHERE, StepStopped
from workflows.registry import StepError

if TYPE_CHECKING:
    from agents.control import StepControl
    from agents.outbox import Outbox

log = logging.getLogger("converge.agent")

# Claim the attempt and report `started` in one round trip. A delivery is dropped when the attempt was
# already claimed (a redelivery after the visibility timeout, a re-publish after an engine crash), when
# it was cancelled before it started, or when the step has been retried since (an older attempt). A role
# step is put back on its queue when this agent does not hold the role's lease (ARGV[5], KEYS[5]): the
# fencing that keeps an agent that lost its leadership, paused or cut off, from running the role's steps.
# The `started` event (ARGV[3], with its MAC in ARGV[7]) carries the role's epoch the attempt runs under
# (KEYS[6]; 0 for a pinned step): when it is not the one the event was made with (ARGV[6]), the answer is
# 'epoch' and that epoch, and the agent makes and signs the event again. Returns the answer and the epoch.
_CLAIM_AND_START = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {'cancelled', 0} end
local epoch = 0
if ARGV[5] ~= '' then
  if redis.call('GET', KEYS[5]) ~= ARGV[5] then return {'not leader', 0} end
  epoch = tonumber(redis.call('GET', KEYS[6]) or '0')
end
local current = redis.call('GET', KEYS[4])
if current and current ~= ARGV[4] then return {'stale attempt', epoch} end
if epoch ~= tonumber(ARGV[6]) then return {'epoch', epoch} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[3], 's', ARGV[7])
  return {'ours', epoch}
end
return {'already claimed', epoch}
"""


REPORT_TIMEOUT_S = 5.0
EPOCH_TRIES = 3
WATCH_TIMEOUT_S = 1.0


class Claim(Enum):
    OURS = "ours"
    CANCELLED = "cancelled"
    STALE = "stale attempt"
    TAKEN = "already claimed"
    NOT_LEADER = "not leader"
    EPOCH = "epoch"  # the event was made under another epoch than the role's: make it again


class Reporter:
    """Writes status events; one Redis connection per process (Celery's prefork children fork after init).

    A step's final report goes to the outbox first, then to the stream: if sending fails, the agent's main
    process sends it again later. Progress reports are only worth sending now, and are not kept. Every
    report goes out with this agent's MAC over it (`event_key`): the engine records no other.
    """

    def __init__(
        self,
        broker_url: str,
        agent_id: str,
        outbox: Outbox,
        event_key: bytes,
        lease_holder: str = "",
        engine: EngineApi | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.agent_id = agent_id
        self.outbox = outbox
        self.event_key = event_key
        # The engine's API, where steps fetch their credentials; None: this agent was given no token.
        self.engine = engine
        # This agent's value in a role's lease; "" runs role steps without asking who leads the role.
        self.lease_holder = lease_holder
        self._client: redis.Redis | None = None
        self._watch_client: redis.Redis | None = None
        self._claim: Any = None
        self._pid = 0

    @property
    def client(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():
            # The step's own reports, one after another from the pool process's step: one connection.
            self._client = fail_fast(self.broker_url, REPORT_TIMEOUT_S, single=True)
            self._watch_client = fail_fast(self.broker_url, WATCH_TIMEOUT_S)
            self._claim = self._client.register_script(_CLAIM_AND_START)  # EVALSHA, loaded once
            self._pid = os.getpid()
        return self._client

    @property
    def watch_client(self) -> redis.Redis:
        """For the step watcher's polls, which must not hold it up when Redis cannot be reached."""
        self.client  # noqa: B018 -- (re)made with the main client, after a fork too
        assert self._watch_client is not None
        return self._watch_client

    def event(self, step: StepMessage, seq: int, state: str, **fields: Any) -> None:
        """Send a report that is not worth keeping (progress): lost if Redis cannot be reached now."""
        try:
            self.client.xadd(names.STATUS_STREAM, self.entry(self._event(step, seq, state, **fields)))
        except redis.RedisError as exc:
            log.debug("progress of %s not sent: %s", step.step_id, exc)

    def final(self, step: StepMessage, seq: int, state: str, **fields: Any) -> None:
        """How an attempt ended: sent, or else kept in the outbox until the stream has it; either ends the
        attempt's journal entry. A process that dies before that leaves the entry, and the main process
        reports the attempt lost (stale to the engine if this report got through)."""
        event = self._event(step, seq, state, **fields)
        try:
            self.client.xadd(names.STATUS_STREAM, self.entry(event))
        except redis.RedisError as exc:
            self.outbox.finish(step, event)
            log.warning("report of step %s (%s) kept to send later: %s", step.step_id, state, exc)
            return
        self.outbox.forget(step)  # one transaction on the hot path, not two

    def flush(self, step_id: str) -> None:
        """Send what the outbox still holds for a step, before a new attempt of it claims its place in the
        stream: the engine then learns of a late success of the previous attempt first."""
        pending = self.outbox.pending_for(step_id)
        if pending:
            pipe = self.client.pipeline(transaction=False)
            for entry in pending:
                pipe.xadd(names.STATUS_STREAM, self.entry(entry.event))
            pipe.execute()
            self.outbox.sent([entry.id for entry in pending])

    def entry(self, event: str) -> dict[FieldT, EncodableT]:
        """A status stream entry: the event and this agent's MAC over it."""
        return {names.EVENT_FIELD: event, names.MAC_FIELD: signing.mac(self.event_key, event.encode())}

    def claim_and_start(self, message: StepMessage, claim_ttl_s: float) -> tuple[Claim, int]:
        """Report `started` unless this delivery must not run; say why not, and the epoch of the role's
        leadership the attempt runs under (0 for a step pinned to this agent)."""
        keys = [
            names.claim_key(message.step_id, message.attempt),
            names.STATUS_STREAM,
            names.cancel_key(message.step_id, message.attempt),
            names.attempt_key(message.step_id),
            names.leader_key(message.role),
            names.epoch_key(message.role),
        ]
        epoch = message.epoch
        client = self.client  # before self._claim: made with the client
        for _ in range(EPOCH_TRIES):
            started = self._event(message, 1, "started", epoch=epoch)
            args: list[str | int] = [
                self.agent_id,
                int(claim_ttl_s * 1000),
                started,
                str(message.attempt),
                "" if message.scope else self.lease_holder,  # a step pinned to this agent needs no lease
                epoch,
                signing.mac(self.event_key, started.encode()),
            ]
            answer, now = self._claim(keys=keys, args=args, client=client)
            claim = Claim(answer.decode() if isinstance(answer, bytes) else answer)
            if claim is not Claim.EPOCH:
                return claim, int(now)
            epoch = int(now)
        return Claim.NOT_LEADER, 0  # the leadership keeps changing under it: the next leader takes it

    def _event(self, step: StepMessage, seq: int, state: str, **fields: Any) -> str:
        return event_json(self.agent_id, step, seq, state, **fields)

    def check_result(self, reply_to: str, result: CheckResult) -> None:
        pipe = self.client.pipeline()
        pipe.rpush(reply_to, result.model_dump_json())
        pipe.expire(reply_to, 300)
        pipe.execute()


def event_json(agent_id: str, step: StepMessage, seq: int, state: str, **fields: Any) -> str:
    """A StatusEvent as JSON, built directly: this runs twice per step, on the hot path."""
    event = {
        "workflow_id": step.workflow_id,
        "step_id": step.step_id,
        "attempt": step.attempt,
        "epoch": step.epoch,
        "seq": seq,
        "state": state,
        "agent": agent_id,
        "at": datetime.now(UTC).isoformat(),
    }
    event.update((k, v) for k, v in fields.items() if v is not None)
    return json.dumps(event)


class StepProgress:
    """The StepContext a provider sees on an agent: progress goes out rate-limited on the stream."""

    def __init__(
        self,
        reporter: Reporter,
        message: StepMessage,
        interval_s: float,
        control: StepControl | None,
        allowed_paths: Sequence[Path] = EVERYWHERE,
        validators: Callable[[str], Callable[..., Any]] | None = None,
    ) -> None:
        """`validators`: the agent registry's, with its extensions (Registry.validator)."""
        self.reporter = reporter
        self._validators = validators
        self.message = message
        self.interval_s = interval_s
        self.control = control
        self._allowed_paths = tuple(allowed_paths)
        self.seq = 0
        self._last = 0.0
        self.captured: dict[str, Any] | None = None

    @property
    def step_id(self) -> str:
        return self.message.step_id

    @property
    def resource(self) -> str:
        return self.message.resource

    @property
    def agent_id(self) -> str:
        return self.reporter.agent_id

    @property
    def epoch(self) -> int:
        return self.message.epoch

    @property
    def allowed_paths(self) -> Sequence[Path]:
        return self._allowed_paths

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def progress(self, percent: float | None, message: str | None = None) -> None:
        if self.control is None:  # check mode: nothing to report
            return
        if self.control.reason is not None:
            raise StepStopped(self.control.reason)
        self.control.touch()
        now = time.monotonic()
        if now - self._last < self.interval_s and (percent is None or percent < 100):
            return
        self._last = now
        self.reporter.event(self.message, self.next_seq(), "progress", progress=percent, message=message)

    def attach(self, pgid: int) -> None:
        if self.control is not None:
            self.reporter.outbox.attach(self.message, pgid)
            self.control.attach(pgid)

    def output(self, document: dict[str, Any]) -> None:
        self.captured = document

    def log(self, message: str) -> None:
        logging.getLogger("converge.step").info("%s: %s", self.message.step_id, message)

    def credential(self, name: str) -> str:
        """Fetched from the engine for this attempt and epoch; only while the step runs, not in a plan."""
        step = self.message
        if name not in step.credentials:
            raise StepError(
                f"credential {name!r} is not in the `credentials` list of {step.resource}: add it there",
                retryable=False,
            )
        if self.control is None:
            raise StepError(f"credential {name!r}: a plan fetches no credential, only a running step does")
        engine = self.reporter.engine
        if engine is None:
            raise StepError(
                f"credential {name!r}: agent {self.agent_id} cannot fetch credentials: set its engine_url "
                "and api_token (`converge-agent config set`)",
                retryable=False,
            )
        try:
            return engine.credential(name, step.step_id, step.attempt, step.epoch)
        except EngineApiError as exc:
            raise StepError(f"credential {name!r}: {exc}", retryable=exc.retryable) from None

    def engine_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The engine's routes for its own agent; the engine refuses any other agent (403)."""
        engine = self.reporter.engine
        if engine is None:
            raise StepError(
                f"{method} {path}: agent {self.agent_id} has no engine_url and api_token: only the engine's "
                "own agent runs this kind",
                retryable=False,
            )
        try:
            return engine.engine_call(method, path, body)
        except EngineApiError as exc:
            raise StepError(f"{method} {path}: {exc}", retryable=exc.retryable) from None

    def validator(self, name: str) -> Callable[..., Any]:
        if self._validators is None:
            from workflows.registry import default_registry

            return default_registry(packages=False).validator(name)
        return self._validators(name)

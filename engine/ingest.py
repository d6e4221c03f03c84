"""The status ingester: reads the status stream through a consumer group, records, then acknowledges.

An entry is acknowledged only after the store has committed it, so a crash loses nothing, and the store
ignores what it already has (step, attempt, sequence). Nothing is stranded either:

- After any failure the ingester reads its own pending entries again ("0") before new ones (">"), and
  every CLAIM_EVERY_S it claims the entries another consumer of the group left idle (an engine that died).
- A store that is down (locked, unreachable, out of disk: see `engine.health.store_is_down`) counts
  against no entry: the ingester backs off (BACKOFF_MIN_S doubling to BACKOFF_MAX_S), says so once, and
  says when the store is back.
- Any other error is blamed on the batch: its halves are recorded apart, down to the one entry that
  fails alone. After MAX_FAILURES failures that entry goes to the dead-letter stream, and the rest goes on.
- A malformed entry (not JSON, not a status event) goes to the dead-letter stream at once.

Only an agent's own events are recorded (engine.eventkeys): an entry whose MAC does not verify against the
key of the agent it names (unsigned, forged, of an agent that is not admitted), or that the store refuses
because another agent holds the attempt (common.lifecycle.may_report), is dropped, logged, and counted
by reason in `converge:status:refused` (`GET /v1/health` shows the counts, as `ingest.refused`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from pydantic import TypeAdapter, ValidationError

from common import names
from common.lifecycle import Roles
from common.models import StatusEvent
from common.store import RecordResult, Store
from engine import batching, deadletters
from engine.dispatcher import PUBLISH_ERRORS
from engine.eventkeys import Lookup, Refusal, authenticate
from engine.health import describe, store_is_down

log = logging.getLogger("converge.engine")

MAX_FAILURES = 3
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0
CLAIM_EVERY_S = 30.0
CLAIM_IDLE_MS = 60_000  # longer than any batch takes, so a live consumer's entries are left alone
LOGGED_REFUSALS = 5  # per batch: a flood of forged entries is logged as a count beyond these
_EVENT = names.EVENT_FIELD.encode()
_MAC = names.MAC_FIELD.encode()


Entry = tuple[bytes, dict[bytes, bytes]]
Parsed = tuple[Entry, StatusEvent]


class StoreDown(Exception):
    """The store cannot be used now: retry the batch later, blaming no entry."""


class Ingester:
    """One consumer of the engine's group; runs in a thread of the engine service."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        act: Callable[[RecordResult], None],
        lookup: Lookup,
        consumer: str = "engine-1",
        batch: int = 1000,
        *,
        max_failures: int = MAX_FAILURES,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        outstanding: batching.Outstanding | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.act = act
        self.lookup = lookup  # an agent's key and roles (engine.eventkeys.EventKeys.grant)
        self.consumer = consumer
        self.batch = batch
        self.max_failures = max_failures
        self.claim_idle_ms = claim_idle_ms
        self.failures: dict[bytes, tuple[int, str]] = {}  # entry id -> times refused alone, last error
        self.store_down_since: float | None = None
        self.backoff_s = BACKOFF_MIN_S
        self._stop = threading.Event()
        self._reread = True  # read our pending entries ("0") before new ones: at start, after a failure
        self._next_claim = 0.0
        self._orphans: list[str] = []  # consumers of engines that stopped, to take over (`adopt`)
        self._orphans_lock = threading.Lock()
        self._owed: list[RecordResult] = []  # recorded, but acting on it (publishing) failed: act again
        # The attempts published and not ended, shared with the dispatcher: whether more events are
        # coming soon (engine.batching).
        self.outstanding = batching.Outstanding() if outstanding is None else outstanding

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(names.STATUS_STREAM, names.STATUS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply = self.client.xreadgroup(
            names.STATUS_GROUP, self.consumer, {names.STATUS_STREAM: start}, count=count, block=block_ms
        )
        return reply[0][1] if reply else []  # type: ignore[index,return-value]

    def run_once(self, block_ms: int = 1000) -> int:
        """Read, record and acknowledge one batch. Returns the number of entries handled."""
        self._act_owed()
        self._adopt_orphans()
        self._claim_idle()
        rereading = self._reread
        entries = self._read("0", self.batch, None) if rereading else []
        if not entries:
            self._reread = rereading = False  # nothing of ours is pending any more: read new entries
            entries = self._read(">", self.batch, block_ms)
            if not entries:
                self.outstanding.idle()
                return 0
        if not rereading and batching.linger(len(entries), self.batch, len(self.outstanding)):
            # A busy stream: a few milliseconds more turn many small transactions into one.
            time.sleep(batching.LINGER_S)
            entries += self._read(">", self.batch - len(entries), None)
        self._reread = True  # until this batch is acknowledged
        gone = [e for e in entries if not e[1]]  # deleted from the stream while pending: only acknowledge
        parsed, junk = _parse([e for e in entries if e[1]] if gone else entries)
        try:
            parsed, roles, forged = self._authenticate(parsed)
            self.outstanding.saw(ev for _, ev in parsed)  # only what agents wrote
            refused = self._record(parsed, roles)
        except StoreDown as exc:
            self._settle(gone, [], junk)
            self._store_down(exc, len(parsed))
            return 0
        if parsed:
            self._store_back()
        if forged:
            self._drop_forged(forged)
            gone += [entry for (entry, _), _ in forged]
        done = gone + [entry for entry, _ in parsed if not refused or entry[0] not in refused]
        self._settle(done, [entry for entry, _ in parsed if entry[0] in refused], junk)
        self._reread = rereading or bool(refused)
        return len(done) + len(junk)

    def _authenticate(
        self, parsed: list[Parsed]
    ) -> tuple[list[Parsed], dict[str, Roles], list[tuple[Parsed, Refusal]]]:
        """The entries whose MAC verifies, the roles of their agents, and the others with why not."""
        try:
            roles, refused = authenticate(
                ((ev.agent, fields.get(_EVENT, b""), fields.get(_MAC)) for (_, fields), ev in parsed),
                self.lookup,
            )
        except redis.RedisError:
            raise
        except Exception as exc:  # the store, asked for an enrollment
            if store_is_down(exc):
                raise StoreDown(describe(exc)) from exc
            raise
        if not refused:
            return parsed, roles, []
        kept = [p for i, p in enumerate(parsed) if i not in refused]
        return kept, roles, [(parsed[i], refusal) for i, refusal in refused.items()]

    def _drop_forged(self, forged: list[tuple[Parsed, Refusal]]) -> None:
        """Count and log the entries refused for their MAC (they are acknowledged and deleted)."""
        pipe = self.client.pipeline(transaction=False)
        for _, refusal in forged:
            pipe.hincrby(names.EVENTS_REFUSED, refusal.reason, 1)
        pipe.execute()
        for ((entry_id, _), ev), refusal in forged[:LOGGED_REFUSALS]:
            log.error(
                "refused status entry %s (%s of step %.100r attempt %d): %s. Nothing was recorded: find "
                "what else writes to this Redis",
                entry_id.decode(),
                ev.state,
                ev.step_id,
                ev.attempt,
                refusal.message,
            )
        if len(forged) > LOGGED_REFUSALS:
            log.error("refused %d more status entries of that batch", len(forged) - LOGGED_REFUSALS)

    def _record(self, batch: list[Parsed], roles: dict[str, Roles] | None = None) -> set[bytes]:
        """Record a batch; blame a refusal on halves, down to the entry refused alone. Returns those ids."""
        if not batch:
            return set()
        began = time.perf_counter()
        try:
            result = self.store.record([ev for _, ev in batch], roles)
        except Exception as exc:
            if store_is_down(exc):
                raise StoreDown(describe(exc)) from exc
            refusal = exc
        else:
            log.debug("recorded %d events in %.1f ms", len(batch), (time.perf_counter() - began) * 1000)
            if result.refused:
                self._not_holders(result.refused)
            self._act(result)
            if result.stale or result.duplicate:
                log.info(
                    "recorded %d stale and %d duplicate status events: nothing changed",
                    result.stale,
                    result.duplicate,
                )
            return set()
        if len(batch) > 1:
            mid = len(batch) // 2
            return self._record(batch[:mid], roles) | self._record(batch[mid:], roles)
        self._refused(batch[0], refusal)
        return {batch[0][0][0]}

    def _not_holders(self, events: list[StatusEvent]) -> None:
        """Log and count the events the store refused: their agent does not hold the attempt."""
        self.client.hincrby(names.EVENTS_REFUSED, "not holder", len(events))
        for ev in events[:LOGGED_REFUSALS]:
            log.error(
                "refused a status event of agent %.100r on step %.100r attempt %d (%s): it neither holds "
                "the attempt nor may run the step. Nothing was recorded",
                ev.agent,
                ev.step_id,
                ev.attempt,
                ev.state,
            )

    def _act_owed(self) -> None:
        """Publish what was recorded while Redis could not be reached; a failure of another kind is not
        retried for ever (it would hold up ingestion): it is logged."""
        while self._owed:
            try:
                self.act(self._owed[0])
            except PUBLISH_ERRORS:
                raise
            except Exception:
                log.exception("acting on recorded status events failed; not trying again")
            self._owed.pop(0)

    def _act(self, result: RecordResult) -> None:
        try:
            self.act(result)
        except PUBLISH_ERRORS:
            self._owed.append(result)  # the store has it: only publishing is left, once Redis is back
            raise

    def _refused(self, parsed: Parsed, exc: Exception) -> None:
        (entry_id, _), ev = parsed
        count = self.failures.get(entry_id, (0, ""))[0] + 1
        self.failures[entry_id] = (count, describe(exc))
        log.warning(
            "the store refused status entry %s (step %s, attempt %d, seq %d), %d of %d times: %s",
            entry_id.decode(),
            ev.step_id,
            ev.attempt,
            ev.seq,
            count,
            self.max_failures,
            describe(exc),
            exc_info=count == 1,
        )

    def _settle(self, done: list[Entry], refused: list[Entry], junk: list[tuple[Entry, str]]) -> None:
        """Acknowledge what was recorded; move malformed entries, and those refused too often, aside."""
        pipe = self.client.pipeline()
        for (entry_id, fields), error in junk:
            log.error("dead-lettering malformed status entry %s: %s", entry_id.decode(), error)
            deadletters.bury(pipe, entry_id, fields, error, 1)
        for entry_id, fields in refused:
            count, error = self.failures[entry_id]
            if count >= self.max_failures:
                log.error(
                    "dead-lettering status entry %s, refused %d times; see `converge dead-letters`",
                    entry_id.decode(),
                    count,
                )
                deadletters.bury(pipe, entry_id, fields, error, count)
                del self.failures[entry_id]
        ids = [entry_id for entry_id, _ in done]
        if ids:
            pipe.xack(names.STATUS_STREAM, names.STATUS_GROUP, *ids)
            pipe.xdel(names.STATUS_STREAM, *ids)
            if self.failures:
                for entry_id in ids:
                    self.failures.pop(entry_id, None)
        pipe.execute()

    def _store_down(self, exc: StoreDown, waiting: int) -> None:
        if self.store_down_since is None:
            self.store_down_since = time.time()
            log.error(
                "the store is down (%s): %d status events wait in the stream, retried until it is back",
                exc,
                waiting,
            )
        else:
            self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2)

    def _store_back(self) -> None:
        if self.store_down_since is not None:
            log.warning(
                "the store is back: recording status events again, after %.0f s",
                time.time() - self.store_down_since,
            )
        self.store_down_since = None
        self.backoff_s = BACKOFF_MIN_S

    def adopt(self, consumers: list[str]) -> None:
        """Take over the entries these consumers read and left unacknowledged, at the next batch: their
        engines stopped (engine.duties saw it), so there is no need to wait until they are idle."""
        with self._orphans_lock:
            self._orphans += [c for c in consumers if c != self.consumer]

    def _adopt_orphans(self) -> None:
        with self._orphans_lock:
            orphans, self._orphans = self._orphans, []
        for index, consumer in enumerate(orphans):
            try:
                taken = self._take_from(consumer)
            except redis.RedisError:
                with self._orphans_lock:
                    self._orphans += orphans[index:]  # the next batch tries again
                raise
            if taken:
                self._reread = True
                log.warning("took over %d status entries that stopped engine %s had read", taken, consumer)

    def _take_from(self, consumer: str) -> int:
        """Claim every entry pending for `consumer`, then drop it from the group. Returns how many."""
        taken = 0
        for _ in range(1000):  # bounded: a batch of entries each round
            pending = self.client.xpending_range(
                names.STATUS_STREAM, names.STATUS_GROUP, "-", "+", self.batch, consumername=consumer
            )
            if not pending:
                break
            ids: list[bytes | str | int | memoryview[int]] = [p["message_id"] for p in pending]
            self.client.xclaim(names.STATUS_STREAM, names.STATUS_GROUP, self.consumer, 0, ids, justid=True)
            taken += len(ids)
        self.client.xgroup_delconsumer(names.STATUS_STREAM, names.STATUS_GROUP, consumer)
        return taken

    def _claim_idle(self) -> None:
        """Take over the entries any consumer of the group read and left idle (an engine that died)."""
        now = time.monotonic()
        if now < self._next_claim:
            return
        self._next_claim = now + CLAIM_EVERY_S
        cursor = "0-0"
        for _ in range(100):  # bounded: 100 pages of `batch` entries each pass
            reply = self.client.xautoclaim(
                names.STATUS_STREAM,
                names.STATUS_GROUP,
                self.consumer,
                self.claim_idle_ms,
                cursor,
                count=self.batch,
            )
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if reply[1]:
                self._reread = True
                log.warning(
                    "took over %d status entries left unacknowledged for over %.0f s (by an engine that "
                    "stopped?)",
                    len(reply[1]),
                    self.claim_idle_ms / 1000,
                )
            if cursor == "0-0":
                return

    def run(self) -> None:
        self._recreate_group()  # guarded: with Redis down, the loop's NOGROUP handling tries again
        while not self._stop.is_set():
            try:
                self.run_once()
            except redis.ResponseError as exc:
                self._reread = True
                if "NOGROUP" in str(exc):
                    # Redis lost the stream (a restart without persistence): make the group again.
                    log.warning("the status stream's consumer group is gone; creating it again")
                    self._recreate_group()
                else:
                    log.warning("status stream error (%s); retrying", exc)
                    self._stop.wait(1.0)
            except redis.RedisError as exc:
                self._reread = True
                log.warning("status stream unavailable (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception:
                self._reread = True
                log.exception("status ingestion failed; retrying")
                self._stop.wait(1.0)
            else:
                if self.store_down_since is not None:
                    self._stop.wait(self.backoff_s)

    def _recreate_group(self) -> None:
        try:
            self.ensure_group()
        except redis.RedisError as exc:
            log.warning("cannot create the consumer group yet (%s); retrying", exc)
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()


_EVENTS = TypeAdapter(list[StatusEvent])


def _parse(entries: list[Entry]) -> tuple[list[Parsed], list[tuple[Entry, str]]]:
    """Validate a batch of events in one call; on a malformed one, fall back to one by one.

    Returns the events with their entries, and the malformed entries with what is wrong with them.
    """
    raw = [fields.get(b"e", b"") for _, fields in entries]
    try:
        events = _EVENTS.validate_json(b"[" + b",".join(raw) + b"]")
        if len(events) == len(entries):  # a crafted entry could hold two events
            return list(zip(entries, events, strict=True)), []
    except ValidationError:
        pass
    parsed: list[Parsed] = []
    junk: list[tuple[Entry, str]] = []
    for entry in entries:
        try:
            parsed.append((entry, StatusEvent.model_validate_json(entry[1].get(b"e", b""))))
        except ValidationError as exc:
            junk.append((entry, _validation_error(entry[1], exc)))
    return parsed, junk


def _validation_error(fields: dict[bytes, bytes], exc: ValidationError) -> str:
    if b"e" not in fields:
        return "not a status entry: no field `e` holding a status event"
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
    return f"not a status event: {problems}"

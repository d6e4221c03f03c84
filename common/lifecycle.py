"""The step and workflow state machine: pure rules on a step's row, with no I/O.

A row is the step as the store holds it (a dict of its columns). The store loads rows, asks these rules
what an event does to them, and saves what changed; the rules are tested alone in tests/unit.
"""

from __future__ import annotations

import json
import random
from enum import Enum
from typing import Any

from common.models import ACTIVE_STEP, FINISHED_STEP, StatusEvent, StepState, WorkflowState

MAX_BACKOFF_S = 300.0

Row = dict[str, Any]


class Verdict(Enum):
    """What one status event did to a step."""

    STALE = "stale"  # an attempt that is no longer current, or an older epoch: nothing changed
    DUPLICATE = "duplicate"  # already recorded (same attempt, sequence number not newer)
    MOVED = "moved"  # recorded; the step is still running, or had already finished
    FINISHED = "finished"  # recorded; the step reached a final state with this event
    LATE_SUCCESS = "late success"  # the previous attempt succeeded after all: the step is done
    REFUSED = "refused"  # from an agent that does not hold the attempt, nor may run the step: nothing changed


# The roles an agent may report on: a set, or ANY_ROLE for a trusted agent (and the engine's own verdicts).
Roles = frozenset[str] | None
ANY_ROLE: Roles = None


def backoff_s(base_s: float, attempt: int) -> float:
    """Exponential backoff with full jitter around it: base * 2^(attempt-1), times 0.5 to 1.5."""
    return float(min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))


def take(row: Row, ev: StatusEvent, now: float, roles: Roles = ANY_ROLE) -> Verdict:
    """Apply one event to a step's row; `roles` are those the event's agent may report on.

    A success is a fact: when the engine gave up on an attempt (its agent was lost, say) and queued the
    next one, and the old attempt's success then arrives before the new attempt started, the step is
    done with the old attempt, and the new one (`superseded`) must be dropped.

    Fencing: an attempt runs under the epoch of the role's leadership that claimed it, which its first
    report records. A report of that attempt from an older epoch (a former leader's) is stale. Epoch 0
    is not fenced: a step pinned to one agent, and the engine's own verdicts.
    """
    if not may_report(row, ev, roles):
        return Verdict.REFUSED
    if late_success(row, ev):
        row.update(
            attempt=ev.attempt,
            state=StepState.STARTED,
            last_seq=0,
            not_before=None,
            lost_attempt=None,
            epoch=ev.epoch,
        )
        move(row, ev, now)
        return Verdict.LATE_SUCCESS
    if ev.attempt != row["attempt"] or older_epoch(row, ev):
        return Verdict.STALE
    if ev.seq <= row["last_seq"]:
        return Verdict.DUPLICATE
    if ev.epoch > (row.get("epoch") or 0):
        row["epoch"] = ev.epoch
    return Verdict.FINISHED if move(row, ev, now) else Verdict.MOVED


def may_report(row: Row, ev: StatusEvent, roles: Roles) -> bool:
    """Whether the event's agent may report on the step: once an attempt has started, only the agent that
    started it may report on that attempt; before, an agent the step could have been given to (of the
    step's role, or the one agent a pinned step is for)."""
    if ev.attempt == row["attempt"] and row.get("agent"):
        return bool(ev.agent == row["agent"])
    if row.get("scope"):
        return bool(ev.agent == row["scope"])
    return roles is None or row["role"] in roles


def older_epoch(row: Row, ev: StatusEvent) -> bool:
    """A report from a leadership older than the one the attempt runs under."""
    return 0 < ev.epoch < (row.get("epoch") or 0)


def late_success(row: Row, ev: StatusEvent) -> bool:
    """A success of the attempt the engine gave up on unheard, while the next one has not started."""
    return (
        ev.state == StepState.SUCCEEDED
        and ev.attempt == row.get("lost_attempt") == row["attempt"] - 1
        and row["state"] in (StepState.PENDING, StepState.QUEUED)
    )


def move(row: Row, ev: StatusEvent, now: float) -> bool:
    """Move one step row by one event of its current attempt. True when the step reached a final state."""
    at = ev.at.timestamp()
    row["last_seq"] = ev.seq
    row["last_report_at"] = now
    if StepState(row["state"]) in FINISHED_STEP:
        return False
    if row["state"] in (StepState.PENDING, StepState.QUEUED):
        row["state"] = StepState.STARTED
        row["started_at"] = at
    row["agent"] = ev.agent
    if ev.message is not None:
        row["message"] = ev.message
    if ev.state in (StepState.STARTED, "progress"):
        if ev.progress is not None:
            row["progress"] = ev.progress
        return False
    row["state"] = ev.state
    row["finished_at"] = at
    row["changed"] = ev.changed
    row["error"] = ev.error
    if ev.state == StepState.SUCCEEDED:
        row["progress"] = 100.0
    return True


def retry(row: Row, ev: StatusEvent, now: float) -> bool:
    """Schedule the next attempt of a failed step if its policy allows; True if it will run again.

    An attempt lost with its worker (a killed pool process, a dead or cut-off agent) did not fail by
    itself: the next attempt is due at once, since backing off protects a resource, not an agent.
    """
    if ev.retryable is False or row["attempt"] >= row["retry_attempts"]:
        return False
    delay = 0.0 if ev.lost else backoff_s(row["retry_backoff_s"], row["attempt"])
    error, attempt = row["error"], row["attempt"]
    reset(row, attempt + 1, StepState.PENDING)
    row["not_before"] = now + delay
    row["lost_attempt"] = attempt if ev.lost else None
    when = "now" if ev.lost else f"in {delay:.1f}s"
    row["message"] = f"attempt {row['attempt'] - 1} failed ({error}); retrying {when}"
    return True


def reset(row: Row, attempt: int, state: StepState) -> None:
    """Make a row a fresh attempt in `state`."""
    row.update(
        attempt=attempt,
        state=state,
        last_seq=0,
        agent=None,
        progress=None,
        message=None,
        error=None,
        changed=None,
        started_at=None,
        finished_at=None,
        last_report_at=None,
        lost_attempt=None,
        epoch=0,
    )


def workflow_state(counts: dict[StepState, int], retrying: int, *, cancelling: bool) -> WorkflowState | None:
    """A workflow's final state from the counts of its unfinished steps, once nothing can move any more;
    None while it is still running."""
    if any(counts.get(s) for s in ACTIVE_STEP):
        return None
    if cancelling:
        return WorkflowState.CANCELLED
    if retrying:
        return None
    if counts.get(StepState.TIMED_OUT):
        return WorkflowState.ABORTED
    if counts.get(StepState.CANCELLED):
        return WorkflowState.CANCELLED
    if counts.get(StepState.FAILED):
        return WorkflowState.FAILED
    if counts.get(StepState.PENDING):
        return None
    return WorkflowState.SUCCEEDED


_WHY = {
    StepState.FAILED: "failed",
    StepState.TIMED_OUT: "timed out",
    StepState.CANCELLED: "was cancelled",
    StepState.SKIPPED: "was skipped",
}


def skip_reasons(waiting: dict[str, list[str]], found: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The message of each step skipped when its workflow ended while it still waited on dependencies.

    `waiting` maps those steps to the ids they depend on; `found` maps step ids to (resource, state).
    The reason names the first dependency that did not succeed, preferring one that ran and failed over
    one that was itself skipped, so the operator is led to the cause.
    """
    reasons = {}
    for step_id, deps in waiting.items():
        missed = [d for d in deps if d in found and found[d][1] != StepState.SUCCEEDED]
        missed.sort(key=lambda d: d in waiting)  # a step that ran first, then one skipped with this one
        if not missed:
            reasons[step_id] = "skipped: the workflow ended before it could run"
            continue
        resource, state = found[missed[0]]
        why = StepState.SKIPPED if missed[0] in waiting else state
        reasons[step_id] = f"skipped: {resource} {_WHY.get(StepState(why), 'did not finish')}"
    return reasons


def on_change_verdict(triggers: list[str], found: dict[str, tuple[str, bool | None]]) -> str | None:
    """Whether a step with `on_change` runs, decided by the engine once its triggers have finished.

    `triggers` are the ids of the steps it follows; `found` maps step ids to (resource, changed). None: it
    runs, since one of them reported `changed: true`. Otherwise the message the step is skipped with.
    """
    if any(found.get(step_id, ("", None))[1] for step_id in triggers):
        return None
    refs = list(dict.fromkeys(found[t][0].partition("@")[0] for t in triggers if t in found))
    if not refs:
        return "skipped: what it follows (on_change) made no step in this workflow"
    return f"skipped: none of {', '.join(refs)} changed"


def kept_on_retry(rows: dict[str, Row]) -> set[str]:
    """The steps a retry leaves as they are: those that succeeded, and those skipped by `on_change` whose
    dependencies are all kept (the triggers will not run again, so they cannot change now).

    A step with `on_change` that was skipped while all it depends on is kept was skipped for that reason:
    a step skipped because a dependency failed has a dependency that runs again.
    """
    kept = {step_id for step_id, row in rows.items() if row["state"] == StepState.SUCCEEDED}
    grew = True
    while grew:
        grew = False
        for step_id, row in rows.items():
            if step_id in kept or row["state"] != StepState.SKIPPED or row.get("on_change") is None:
                continue
            if all(dep in kept for dep in json.loads(row["depends_on"])):
                kept.add(step_id)
                grew = True
    return kept

"""The step state machine alone: rows in, rows out, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common import lifecycle
from common.lifecycle import Verdict
from common.models import FINISHED_STEP, StatusEvent, StepState, WorkflowState

NOW = 1_000_000.0


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "w.0",
        "workflow_id": "w",
        "role": "web",
        "scope": None,
        "state": StepState.QUEUED,
        "attempt": 1,
        "last_seq": 0,
        "retry_attempts": 3,
        "retry_backoff_s": 2.0,
        "not_before": None,
    }
    lifecycle.reset(base, 1, StepState.QUEUED)
    return base | fields


def event(state: str, attempt: int = 1, seq: int = 1, **fields: Any) -> StatusEvent:
    return StatusEvent(
        workflow_id="w",
        step_id="w.0",
        attempt=attempt,
        seq=seq,
        state=state,  # type: ignore[arg-type]
        agent="a1",
        at=datetime.now(UTC),
        **fields,
    )


def test_only_the_agent_that_started_an_attempt_reports_on_it() -> None:
    step = row()
    assert lifecycle.take(step, event("started"), NOW, frozenset({"web"})) is Verdict.MOVED
    forged = event("succeeded", seq=2).model_copy(update={"agent": "a2"})
    assert lifecycle.take(step, forged, NOW, frozenset({"web"})) is Verdict.REFUSED
    assert lifecycle.take(step, forged, NOW) is Verdict.REFUSED  # not even a trusted agent
    assert step["state"] == StepState.STARTED and step["agent"] == "a1"
    assert lifecycle.take(step, event("succeeded", seq=2), NOW) is Verdict.FINISHED


def test_before_it_starts_a_step_is_reported_on_only_by_an_agent_it_could_be_given_to() -> None:
    assert lifecycle.take(row(), event("started"), NOW, frozenset({"db"})) is Verdict.REFUSED
    assert lifecycle.take(row(), event("started"), NOW, frozenset({"db", "web"})) is Verdict.MOVED
    assert lifecycle.take(row(), event("started"), NOW, lifecycle.ANY_ROLE) is Verdict.MOVED
    pinned = row(scope="a9")
    assert lifecycle.take(pinned, event("started"), NOW, lifecycle.ANY_ROLE) is Verdict.REFUSED
    mine = event("started").model_copy(update={"agent": "a9"})
    assert lifecycle.take(pinned, mine, NOW, frozenset({"web"})) is Verdict.MOVED


def test_a_step_moves_from_started_to_succeeded_and_records_what_changed() -> None:
    step = row()
    assert lifecycle.take(step, event("started"), NOW) is Verdict.MOVED
    assert step["state"] == StepState.STARTED and step["agent"] == "a1"
    assert lifecycle.take(step, event("succeeded", seq=2, changed=True), NOW) is Verdict.FINISHED
    assert (step["state"], step["changed"], step["progress"]) == (StepState.SUCCEEDED, True, 100.0)


def test_a_repeated_or_older_report_is_a_duplicate_and_changes_nothing() -> None:
    step = row()
    lifecycle.take(step, event("started", seq=2), NOW)
    before = dict(step)
    assert lifecycle.take(step, event("progress", seq=2, progress=50.0), NOW) is Verdict.DUPLICATE
    assert lifecycle.take(step, event("progress", seq=1, progress=50.0), NOW) is Verdict.DUPLICATE
    assert step == before


def test_a_report_of_an_attempt_that_is_not_current_is_stale() -> None:
    step = row(attempt=3)
    assert lifecycle.take(step, event("started", attempt=2), NOW) is Verdict.STALE
    assert lifecycle.take(step, event("failed", attempt=1, seq=5), NOW) is Verdict.STALE


def test_a_lost_attempt_is_retried_at_once_and_a_failed_one_after_its_backoff() -> None:
    lost = row(state=StepState.STARTED, error="worker lost")
    assert lifecycle.retry(lost, event("failed", lost=True), NOW)
    assert (lost["attempt"], lost["state"], lost["not_before"]) == (2, StepState.PENDING, NOW)
    assert "retrying now" in lost["message"]

    failed = row(state=StepState.STARTED, error="exit 1")
    assert lifecycle.retry(failed, event("failed"), NOW)
    assert NOW + 1.0 <= failed["not_before"] <= NOW + 3.0  # 2 s base, jitter 0.5 to 1.5


def test_no_retry_past_the_policy_or_for_an_error_a_retry_cannot_help() -> None:
    assert not lifecycle.retry(row(attempt=3), event("failed", attempt=3, lost=True), NOW)
    assert not lifecycle.retry(row(), event("failed", retryable=False), NOW)


def test_a_late_success_of_the_previous_attempt_settles_a_step_whose_next_attempt_has_not_started() -> None:
    step = row(state=StepState.STARTED)
    assert lifecycle.retry(step, event("failed", lost=True), NOW)  # the engine held its agent lost
    step["state"] = StepState.QUEUED  # due at once: published

    verdict = lifecycle.take(step, event("succeeded", attempt=1, seq=3, changed=True), NOW)

    assert verdict is Verdict.LATE_SUCCESS
    assert (step["state"], step["attempt"], step["changed"]) == (StepState.SUCCEEDED, 1, True)


def test_a_late_success_is_stale_once_the_next_attempt_has_started() -> None:
    step = row(attempt=2, state=StepState.STARTED)
    assert lifecycle.take(step, event("succeeded", attempt=1, seq=3), NOW) is Verdict.STALE
    assert (step["state"], step["attempt"]) == (StepState.STARTED, 2)


def test_a_late_failure_of_the_previous_attempt_is_stale() -> None:
    step = row(attempt=2, state=StepState.QUEUED)
    assert lifecycle.take(step, event("failed", attempt=1, seq=3), NOW) is Verdict.STALE


def test_a_workflow_finishes_only_when_nothing_can_move_any_more() -> None:
    state = lifecycle.workflow_state
    assert state({StepState.STARTED: 1}, 0, cancelling=False) is None
    assert state({StepState.FAILED: 1}, 1, cancelling=False) is None  # a retry is backing off
    assert state({StepState.FAILED: 1}, 0, cancelling=False) == WorkflowState.FAILED
    assert state({StepState.TIMED_OUT: 1, StepState.FAILED: 1}, 0, cancelling=False) == WorkflowState.ABORTED
    assert state({StepState.FAILED: 1}, 0, cancelling=True) == WorkflowState.CANCELLED
    assert state({}, 0, cancelling=False) == WorkflowState.SUCCEEDED


def test_a_late_success_counts_only_for_an_attempt_the_engine_gave_up_on_unheard() -> None:
    step = row(state=StepState.STARTED, error="exit 1")
    assert lifecycle.retry(step, event("failed", seq=2), NOW)  # the step itself said it failed
    step["state"] = StepState.QUEUED

    assert lifecycle.take(step, event("succeeded", attempt=1, seq=3), NOW) is Verdict.STALE
    assert (step["state"], step["attempt"]) == (StepState.QUEUED, 2)


def test_an_attempt_runs_under_the_epoch_of_its_first_report_and_an_older_epoch_is_stale() -> None:
    step = row()
    assert lifecycle.take(step, event("started", epoch=7), NOW) is Verdict.MOVED
    assert step["epoch"] == 7
    before = dict(step)
    # a former leader's report of the same attempt changes nothing, not even as a duplicate would
    assert lifecycle.take(step, event("succeeded", seq=9, epoch=6, changed=True), NOW) is Verdict.STALE
    assert step == before
    assert lifecycle.take(step, event("succeeded", seq=2, epoch=7, changed=True), NOW) is Verdict.FINISHED


def test_the_engines_verdicts_and_pinned_steps_carry_epoch_0_and_are_not_fenced() -> None:
    step = row()
    lifecycle.take(step, event("started", epoch=7), NOW)
    verdict = lifecycle.take(step, event("failed", seq=2**31 - 1, error="worker lost", lost=True), NOW)
    assert verdict is Verdict.FINISHED and step["state"] == StepState.FAILED

    pinned = row()
    assert lifecycle.take(pinned, event("started"), NOW) is Verdict.MOVED
    assert pinned["epoch"] == 0


def test_a_new_attempt_starts_unfenced_so_a_leadership_after_redis_lost_its_epochs_can_run_it() -> None:
    step = row(state=StepState.STARTED)
    lifecycle.take(step, event("started", epoch=9), NOW)
    assert lifecycle.retry(step, event("failed", seq=2, lost=True), NOW)
    assert step["epoch"] == 0
    step["state"] = StepState.QUEUED
    assert lifecycle.take(step, event("started", attempt=2, epoch=1), NOW) is Verdict.MOVED
    assert (step["attempt"], step["epoch"]) == (2, 1)


def test_a_skipped_step_names_the_dependency_that_did_not_succeed() -> None:
    found = {
        "a": ("file/a", StepState.SUCCEEDED),
        "b": ("command/b", StepState.FAILED),
        "c": ("file/c", StepState.PENDING),
        "t": ("wait_for/t", StepState.TIMED_OUT),
        "s": ("file/s", StepState.STARTED),
    }
    waiting = {"c": ["a", "b"], "d": ["c", "b"], "e": ["c"], "f": ["t"], "g": ["s"]}

    reasons = lifecycle.skip_reasons(waiting, found)

    assert reasons == {
        "c": "skipped: command/b failed",
        "d": "skipped: command/b failed",  # the one that ran, before the one skipped with it
        "e": "skipped: file/c was skipped",
        "f": "skipped: wait_for/t timed out",
        "g": "skipped: file/s did not finish",  # stopped when the workflow was aborted
    }


def test_a_skipped_step_is_finished() -> None:
    assert StepState.SKIPPED in FINISHED_STEP
    skipped = row(state=StepState.SKIPPED)
    assert lifecycle.move(skipped, event(StepState.SUCCEEDED), NOW) is False
    assert skipped["state"] == StepState.SKIPPED

"""The store contract: the same assertions on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from common.errors import Refused
from common.models import StatusEvent, StepState, WorkflowState
from common.store import Created, SqlStore, open_store
from common.store.tables import workflows
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text

SOURCE = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: contract}
resources:
  - {kind: directory, name: a, role: web, spec: {path: /tmp/a}}
  - {kind: directory, name: b, role: web, depends_on: [directory/a], spec: {path: /tmp/b}}
  - {kind: directory, name: c, role: db, depends_on: [directory/a, directory/b], spec: {path: /tmp/c}}
  - {kind: directory, name: d, role: db, spec: {path: /tmp/d}}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    yield s
    from sqlalchemy import text

    from common.store.tables import metadata

    metadata.drop_all(s.engine)
    with s.engine.begin() as conn:  # and the migrations' record: the next test's store starts empty
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    s.close()


def new_workflow(store: SqlStore, workflow_id: str, source: str = SOURCE) -> list[str]:
    desired = load_text(source, "contract.yaml", default_registry())
    created = store.create_workflow(plan(desired, workflow_id), source)
    assert created.created and created.workflow_id == workflow_id
    return [m.step_id for m in created.ready]


def event(step_id: str, seq: int, state: str, attempt: int = 1, **fields: object) -> StatusEvent:
    return StatusEvent.model_validate(
        {
            "workflow_id": step_id.split(".")[0],
            "step_id": step_id,
            "attempt": attempt,
            "seq": seq,
            "state": state,
            "agent": "agent-1",
            "at": datetime.now(UTC),
            **fields,
        }
    )


def succeed(step_id: str) -> list[StatusEvent]:
    return [event(step_id, 1, "started"), event(step_id, 2, "succeeded", changed=True)]


def test_a_new_workflow_queues_only_steps_without_dependencies(store: SqlStore) -> None:
    assert new_workflow(store, "w1") == ["w1.0", "w1.3"]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.RUNNING
    assert [s.state for s in view.steps] == ["queued", "pending", "pending", "queued"]
    assert {m.step_id for m in store.queued()} == {"w1.0", "w1.3"}


def test_a_step_is_released_only_when_all_its_dependencies_succeeded(store: SqlStore) -> None:
    new_workflow(store, "w1")
    assert [m.step_id for m in store.record(succeed("w1.0")).ready] == ["w1.1"]
    assert [m.step_id for m in store.record(succeed("w1.1")).ready] == ["w1.2"]


def test_events_are_idempotent_per_step_attempt_and_sequence(store: SqlStore) -> None:
    new_workflow(store, "w1")
    store.record([event("w1.0", 1, "started")])

    again = store.record([event("w1.0", 1, "started"), event("w1.0", 2, "progress", progress=40.0)])
    stale = store.record([event("w1.0", 3, "failed", attempt=7, error="old")])

    assert (again.applied, again.duplicate, stale.stale) == (1, 1, 1)
    step = store.workflow("w1").steps[0]  # type: ignore[union-attr,index]
    assert (step.state, step.progress, step.agent) == (StepState.STARTED, 40.0, "agent-1")
    assert store.running_by_agent() == {"agent-1": 1}


def test_a_workflow_succeeds_when_every_step_did_and_moves_to_history(store: SqlStore) -> None:
    new_workflow(store, "w1")
    result = store.record(succeed("w1.0") + succeed("w1.3") + succeed("w1.1") + succeed("w1.2"))

    assert result.finished == ["w1"]
    view = store.workflow("w1")
    assert view is not None and view.state == WorkflowState.SUCCEEDED and view.finished_at is not None
    assert [w.id for w in store.workflows(history=True)] == ["w1"]
    assert store.workflows() == []
    assert store.active_by_digest(plan(load_text(SOURCE, "x", default_registry()), "x").digest) is None


def test_a_failed_step_fails_the_workflow_once_nothing_else_runs(store: SqlStore) -> None:
    new_workflow(store, "w1")
    first = store.record(
        [event("w1.0", 1, "started"), event("w1.0", 2, "failed", error="boom", retryable=False)]
    )
    assert first.finished == []  # w1.3 is still queued
    second = store.record(succeed("w1.3"))

    assert second.finished == ["w1"]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.FAILED
    assert [s.state for s in view.steps] == ["failed", "skipped", "skipped", "succeeded"]
    # each names the dependency that failed, not the one skipped with it (c waits on a and b)
    assert [s.message for s in view.steps[1:3]] == ["skipped: directory/a failed"] * 2
    assert [w.id for w in store.workflows(state=WorkflowState.FAILED)] == ["w1"]


def test_a_running_workflow_is_found_by_the_digest_of_its_desired_state(store: SqlStore) -> None:
    new_workflow(store, "w1")
    digest = plan(load_text(SOURCE, "x", default_registry()), "other").digest
    assert store.active_by_digest(digest) == "w1"
    assert store.active_by_digest("0" * 64) is None


def test_a_thousand_steps_are_stored_and_released_in_batches(store: SqlStore) -> None:
    lines = [
        f"  - {{kind: directory, name: d{i}, role: web, spec: {{path: /tmp/d{i}}}}}" for i in range(1000)
    ]
    lines += [
        f"  - {{kind: directory, name: after, role: web, depends_on: [{', '.join(f'directory/d{i}' for i in range(1000))}], "
        "spec: {path: /tmp/after}}"
    ]
    source = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: big}\nresources:\n" + "\n".join(
        lines
    )
    assert len(new_workflow(store, "big", source)) == 1000

    result = store.record([e for i in range(1000) for e in succeed(f"big.{i}")])

    assert result.applied == 2000
    assert [m.step_id for m in result.ready] == ["big.1000"]


def test_a_retryable_failure_schedules_the_next_attempt_after_its_backoff(store: SqlStore) -> None:
    new_workflow(store, "w1")
    result = store.record([event("w1.0", 1, "started"), event("w1.0", 2, "failed", error="flaky")])

    assert result.retrying == 1 and result.finished == []
    step = store.workflow("w1").steps[0]  # type: ignore[union-attr,index]
    assert (step.state, step.attempt) == (StepState.PENDING, 2)
    assert "flaky" in (step.message or "")
    assert store.due_retries(time.time()) == []  # backoff is 2s * (0.5 to 1.5)
    due = store.due_retries(time.time() + 10)
    assert [(m.step_id, m.attempt) for m in due] == [("w1.0", 2)]
    # an event of the first attempt is now stale and changes nothing
    assert store.record([event("w1.0", 3, "succeeded")]).stale == 1


def test_the_last_attempt_failing_fails_the_workflow(store: SqlStore) -> None:
    new_workflow(store, "w1")
    for attempt in (1, 2, 3):
        store.record(
            [event("w1.0", 1, "started", attempt=attempt), event("w1.0", 2, "failed", attempt=attempt)]
        )
        store.due_retries(time.time() + 1000)
    store.record(succeed("w1.3"))
    assert store.workflow("w1").state == WorkflowState.FAILED  # type: ignore[union-attr]


def test_cancel_stops_queued_steps_at_once_and_waits_for_running_ones(store: SqlStore) -> None:
    new_workflow(store, "w1")
    store.record([event("w1.0", 1, "started")])

    stop = store.cancel("w1")

    assert sorted(stop.to_stop) == [("w1.0", 1), ("w1.3", 1)]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.CANCELLING
    # what could have started is cancelled; what waits on the running step waits to learn its fate
    assert [s.state for s in view.steps] == ["started", "pending", "pending", "cancelled"]
    assert store.record([event("w1.0", 2, "cancelled")]).finished == ["w1"]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.CANCELLED
    assert [s.state for s in view.steps] == ["cancelled", "skipped", "skipped", "cancelled"]
    assert view.steps[1].message == "skipped: directory/a was cancelled"
    with pytest.raises(Refused, match="already cancelled"):
        store.cancel("w1")


def test_a_step_that_timed_out_aborts_its_workflow(store: SqlStore) -> None:
    new_workflow(store, "w1")
    store.record([event("w1.0", 1, "started"), event("w1.3", 1, "started")])

    result = store.record([event("w1.0", 2, "timed_out", error="no progress")])

    # the timed-out attempt too: when the engine decides it, the agent may still be running it
    assert sorted(result.to_stop) == [("w1.0", 1), ("w1.3", 1)]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.ABORTED
    assert [s.state for s in view.steps] == ["timed_out", "skipped", "skipped", "started"]
    assert view.steps[2].message == "skipped: directory/a timed out"


def test_a_manual_retry_runs_only_the_steps_that_did_not_succeed(store: SqlStore) -> None:
    new_workflow(store, "w1")
    store.record(succeed("w1.0") + succeed("w1.3"))
    store.record([event("w1.1", 1, "started"), event("w1.1", 2, "failed", retryable=False)])
    assert store.workflow("w1").state == WorkflowState.FAILED  # type: ignore[union-attr]

    again = store.retry("w1")

    assert [(m.step_id, m.attempt) for m in again] == [("w1.1", 2)]
    view = store.workflow("w1")
    assert view is not None and view.steps is not None
    assert view.state == WorkflowState.RUNNING
    assert [(s.state, s.attempt) for s in view.steps] == [
        ("succeeded", 1), ("queued", 2), ("pending", 2), ("succeeded", 1)
    ]  # fmt: skip
    with pytest.raises(Refused, match="only failed, aborted or cancelled"):
        store.retry("w1")


def test_pruning_removes_history_older_than_the_retention_only(store: SqlStore) -> None:
    for wf in ("old", "new"):
        new_workflow(store, wf)
        store.record([e for i in range(4) for e in succeed(f"{wf}.{i}")])
    with store.engine.begin() as conn:
        from common.store.tables import workflows

        conn.execute(
            workflows.update().where(workflows.c.id == "old").values(finished_at=time.time() - 31 * 86400)
        )

    assert store.prune(time.time() - 30 * 86400) == 1
    assert [w.id for w in store.workflows(history=True)] == ["new"]
    assert store.workflow("old") is None


def fail_for_good(store: SqlStore, workflow_id: str) -> None:
    store.record(
        [event(f"{workflow_id}.0", 1, "started"), event(f"{workflow_id}.0", 2, "failed", retryable=False)]
    )
    store.record(succeed(f"{workflow_id}.3"))
    assert store.workflow(workflow_id).state == WorkflowState.FAILED  # type: ignore[union-attr]


def submit(store: SqlStore, workflow_id: str) -> Created:
    return store.create_workflow(
        plan(load_text(SOURCE, "contract.yaml", default_registry()), workflow_id), SOURCE
    )


def test_the_same_desired_state_while_its_workflow_is_active_returns_that_workflow(store: SqlStore) -> None:
    new_workflow(store, "w1")

    again = submit(store, "w2")

    assert (again.workflow_id, again.created, list(again.ready)) == ("w1", False, [])
    assert store.workflow("w2") is None


def test_identical_submissions_at_once_make_one_workflow(store: SqlStore) -> None:
    submitters = 8
    barrier = threading.Barrier(submitters)

    def one(index: int) -> Created:
        barrier.wait()
        return submit(store, f"w{index}")

    with ThreadPoolExecutor(submitters) as pool:
        results = list(pool.map(one, range(submitters)))

    assert sum(r.created for r in results) == 1
    assert len({r.workflow_id for r in results}) == 1
    assert [w.id for w in store.workflows()] == [results[0].workflow_id]


def test_a_submission_that_loses_to_another_process_returns_the_winner(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_workflow(store, "w1")
    # Another engine's insert landed between this one's check and its insert: only the index sees it.
    checks = iter([None])
    real_active = store._active
    monkeypatch.setattr(store, "_active", lambda conn, digest: next(checks, real_active(conn, digest)))

    again = submit(store, "w2")

    assert (again.workflow_id, again.created) == ("w1", False)
    assert store.workflow("w2") is None


def test_an_active_desired_state_is_unique_in_the_schema_itself(store: SqlStore) -> None:
    new_workflow(store, "w1")
    row: dict[str, object] = {"name": "x", "digest": _digest(), "source": ""}
    row |= {"history": False, "created_at": 0.0, "updated_at": 0.0}
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(workflows.insert(), {**row, "id": "w2", "state": WorkflowState.RUNNING})
    with store.engine.begin() as conn:  # a finished one may share it
        conn.execute(workflows.insert(), {**row, "id": "w3", "state": WorkflowState.FAILED})


def test_a_failed_workflow_does_not_block_its_desired_state_but_cannot_retry_beside_it(
    store: SqlStore,
) -> None:
    new_workflow(store, "w1")
    fail_for_good(store, "w1")

    second = submit(store, "w2")

    assert (second.workflow_id, second.created) == ("w2", True)
    with pytest.raises(Refused, match="workflow w2 is applying the same desired state"):
        store.retry("w1")


def _digest() -> str:
    return plan(load_text(SOURCE, "contract.yaml", default_registry()), "x").digest


def finished_days_ago(store: SqlStore, workflow_id: str, days: float) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            workflows.update()
            .where(workflows.c.id == workflow_id)
            .values(finished_at=time.time() - days * 86400)
        )


def rows_of(store: SqlStore, workflow_id: str) -> tuple[int, int]:
    """How many steps and step outputs of a workflow the store still holds."""
    from sqlalchemy import func, select

    from common.store.tables import step_outputs, steps

    with store.engine.connect() as conn:
        counts = [
            conn.execute(select(func.count()).where(table.c.workflow_id == workflow_id)).scalar_one()
            for table in (steps, step_outputs)
        ]
    return counts[0], counts[1]


def test_failed_and_cancelled_workflows_past_their_retention_go_with_their_steps_and_outputs(
    store: SqlStore,
) -> None:
    output = {"lines": [[1.0, "err", "boom"]], "cut_bytes": 0}
    for wf in ("failed-old", "failed-new"):
        new_workflow(store, wf)
        for step, state in ((f"{wf}.0", "failed"), (f"{wf}.3", "succeeded")):
            store.record([event(step, 1, "started"), event(step, 2, state, retryable=False, output=output)])
        assert store.workflow(wf).state == WorkflowState.FAILED  # type: ignore[union-attr]
    new_workflow(store, "cancelled-old")
    store.cancel("cancelled-old")
    new_workflow(store, "succeeded-old")
    store.record([e for i in range(4) for e in succeed(f"succeeded-old.{i}")])
    new_workflow(store, "running")
    for wf in ("failed-old", "cancelled-old", "succeeded-old"):
        finished_days_ago(store, wf, 8)
    assert rows_of(store, "failed-old") == (4, 2)

    assert store.prune_unsucceeded(time.time() - 7 * 86400) == 2

    assert store.workflow("failed-old") is None and store.workflow("cancelled-old") is None
    assert rows_of(store, "failed-old") == (0, 0) and rows_of(store, "cancelled-old") == (0, 0)
    assert sorted(w.id for w in store.workflows()) == ["failed-new", "running"]
    assert [w.id for w in store.workflows(history=True)] == ["succeeded-old"], "history has its own"
    assert rows_of(store, "failed-new") == (4, 2)


def test_a_retried_workflow_is_running_again_and_not_pruned_as_failed(store: SqlStore) -> None:
    new_workflow(store, "w1")
    fail_for_good(store, "w1")
    finished_days_ago(store, "w1", 8)
    store.retry("w1")

    assert store.prune_unsucceeded(time.time()) == 0
    assert store.workflow("w1").state == WorkflowState.RUNNING  # type: ignore[union-attr]


def test_history_is_counted_in_all_and_before_a_time(store: SqlStore) -> None:
    for wf in ("old", "new"):
        new_workflow(store, wf)
        store.record([e for i in range(4) for e in succeed(f"{wf}.{i}")])
    finished_days_ago(store, "old", 31)
    new_workflow(store, "running")

    assert store.count_workflows(history=True) == 2
    assert store.count_workflows(history=True, finished_before=time.time() - 30 * 86400) == 1
    assert store.count_workflows(history=False) == 1


def test_workflow_ids_are_found_by_prefix_in_history_and_active_alike(store: SqlStore) -> None:
    new_workflow(store, "abcd0001")
    store.record([e for i in range(4) for e in succeed(f"abcd0001.{i}")])  # in history now
    new_workflow(store, "abcd0002")
    store.record([event("abcd0002.0", 1, "started")])

    assert store.workflow_ids("abcd") == ["abcd0001", "abcd0002"]
    assert store.workflow_ids("abcd0002") == ["abcd0002"]
    assert store.workflow_ids("abcd", limit=1) == ["abcd0001"]
    assert store.workflow_ids("ABCD") == [], "ids are compared exactly"
    assert store.workflow_ids("bcd") == []


def test_like_wildcards_in_a_prefix_are_taken_literally(store: SqlStore) -> None:
    new_workflow(store, "ab_d0001")
    fail_for_good(store, "ab_d0001")
    new_workflow(store, "abxd0002")
    fail_for_good(store, "abxd0002")
    new_workflow(store, "a%\\d0003")

    assert store.workflow_ids("ab_d") == ["ab_d0001"]
    assert store.workflow_ids("a%") == ["a%\\d0003"]
    assert store.workflow_ids("a%\\") == ["a%\\d0003"]
    assert store.workflow_ids("%") == []
    assert store.workflow_ids("_") == []


def test_a_policy_is_kept_per_role_and_key_with_who_set_it(store: SqlStore) -> None:
    store.set_policy("web", {"throttle": 5, "allowed_paths": ["/srv"]}, "admin", 10.0)
    store.set_policy("web", {"throttle": 6}, "ops", 11.0)
    store.set_policy("db", {"task_events": False}, "admin", 12.0)

    web = {r.key: (r.value, r.set_by, r.set_at) for r in store.policies("web")}
    assert web == {"allowed_paths": (["/srv"], "admin", 10.0), "throttle": (6, "ops", 11.0)}
    assert [(r.role, r.key) for r in store.policies()] == [
        ("db", "task_events"),
        ("web", "allowed_paths"),
        ("web", "throttle"),
    ]


def test_unsetting_a_policy_removes_the_keys_named_or_every_key_of_the_role(store: SqlStore) -> None:
    store.set_policy("web", {"throttle": 5, "loglevel": "DEBUG", "task_events": True}, "admin", 1.0)
    store.set_policy("db", {"throttle": 2}, "admin", 1.0)

    assert store.unset_policy("web", ["throttle", "step_timeout_s"]) == ["throttle"]
    assert store.unset_policy("web") == ["loglevel", "task_events"]
    assert store.unset_policy("web") == []
    assert [r.role for r in store.policies()] == ["db"]


ON_CHANGE = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: on-change}
resources:
  - {kind: file, name: conf, role: web, spec: {path: /tmp/conf, content: x}}
  - kind: command
    name: reload
    role: web
    on_change: [file/conf]
    spec: {run: "true", unless: "false"}
  - {kind: directory, name: after, role: web, depends_on: [command/reload], spec: {path: /tmp/after}}
"""


def test_a_step_following_a_change_runs_when_its_trigger_changed(store: SqlStore) -> None:
    assert new_workflow(store, "w1", ON_CHANGE) == ["w1.0"]

    assert [m.step_id for m in store.record(succeed("w1.0")).ready] == ["w1.1"]


def test_a_step_following_a_change_is_skipped_when_nothing_changed_and_frees_its_dependents(
    store: SqlStore,
) -> None:
    new_workflow(store, "w1", ON_CHANGE)

    compliant = [event("w1.0", 1, "started"), event("w1.0", 2, "succeeded", changed=False)]
    ready = store.record(compliant).ready

    assert [m.step_id for m in ready] == ["w1.2"]
    reload = store.workflow("w1").steps[1]  # type: ignore[union-attr,index]
    assert (reload.state, reload.message) == (StepState.SKIPPED, "skipped: none of file/conf changed")
    store.record(succeed("w1.2"))
    assert store.workflow("w1").state == WorkflowState.SUCCEEDED  # type: ignore[union-attr]


def test_a_retry_keeps_a_step_skipped_because_nothing_changed(store: SqlStore) -> None:
    new_workflow(store, "w1", ON_CHANGE)
    store.record([event("w1.0", 1, "started"), event("w1.0", 2, "succeeded", changed=False)])
    store.record(
        [event("w1.2", 1, "started"), event("w1.2", 2, "failed", error="disk full", retryable=False)]
    )
    assert store.workflow("w1").state == WorkflowState.FAILED  # type: ignore[union-attr]

    again = store.retry("w1")

    assert [m.step_id for m in again] == ["w1.2"]
    assert store.workflow("w1").steps[1].state == StepState.SKIPPED  # type: ignore[union-attr,index]

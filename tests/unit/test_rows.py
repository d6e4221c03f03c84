"""The one mapper of a step: plan -> row -> message and view, without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents.config import AgentSettings
from common import defaults
from common.models import AgentInfo, StepMessage, StepState
from common.settings import Settings
from common.store.rows import message_from_row, row_from_plan, view_from_row
from common.store.tables import RUN_COLUMNS, steps
from workflows.plan import StepPlan, WorkflowPlan, plan
from workflows.registry import default_registry
from workflows.spec import load_text

SOURCE = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: estate}
resources:
  - {kind: directory, name: www, role: web, spec: {path: /srv/www}}
  - kind: file
    name: index
    role: web
    scope: web-01
    timeout_s: 30
    credentials: [deploy-key]
    retry: {attempts: 5, backoff_s: 1.5}
    depends_on: [directory/www]
    spec: {path: /srv/www/i, content: x}
"""


def planned() -> WorkflowPlan:
    return plan(load_text(SOURCE, "estate.yaml", default_registry()), "wf")


def second_step() -> StepPlan:
    return planned().steps[1]


def test_a_planned_step_becomes_the_row_the_store_has_always_written() -> None:
    row = row_from_plan(second_step(), "wf")

    assert row == {
        "id": "wf.1",
        "workflow_id": "wf",
        "idx": 1,
        "resource": "file/index",
        "kind": "file",
        "name": "index",
        "role": "web",
        "scope": "web-01",
        "spec": json.dumps({"path": "/srv/www/i", "content": "x"}),
        "depends_on": json.dumps(["wf.0"]),
        "dependents": json.dumps([]),
        "on_change": None,
        "waiting": 1,
        "state": StepState.PENDING,
        "attempt": 1,
        "epoch": 0,
        "last_seq": 0,
        "message": None,
        "finished_at": None,
        "changed": None,
        "timeout_s": 30,
        "retry_attempts": 5,
        "retry_backoff_s": 1.5,
        "credentials": json.dumps(["deploy-key"]),
    }


def test_a_step_without_dependencies_is_queued_and_waits_for_nothing() -> None:
    row = row_from_plan(planned().steps[0], "wf")

    assert (row["state"], row["waiting"], row["dependents"]) == (StepState.QUEUED, 0, '["wf.1"]')


def test_a_planned_row_fills_every_column_that_must_have_a_value() -> None:
    row = row_from_plan(second_step(), "wf")

    required = {c.name for c in steps.columns if not c.nullable}
    assert required <= set(row) <= {c.name for c in steps.columns}


def test_every_column_is_either_planned_or_changed_by_the_run() -> None:
    planned_columns = set(row_from_plan(second_step(), "wf")) - {
        "waiting",
        "state",
        "attempt",
        "epoch",
        "last_seq",
        "message",
        "finished_at",
        "changed",
    }

    assert not planned_columns & set(RUN_COLUMNS)
    assert planned_columns | set(RUN_COLUMNS) == {c.name for c in steps.columns}


def test_the_stored_step_publishes_the_message_the_plan_would() -> None:
    step = second_step()

    from_row = message_from_row(row_from_plan(step, "wf"))

    assert from_row == StepMessage.from_plan(step, "wf")
    assert from_row == StepMessage(
        workflow_id="wf",
        step_id="wf.1",
        resource="file/index",
        kind="file",
        name="index",
        role="web",
        scope="web-01",
        spec={"path": "/srv/www/i", "content": "x"},
        credentials=["deploy-key"],
        timeout_s=30,
        retry_attempts=5,
    )


def test_a_message_carries_the_rows_current_attempt() -> None:
    row = row_from_plan(second_step(), "wf") | {"attempt": 3, "state": StepState.QUEUED}

    assert message_from_row(row).attempt == 3


def test_a_check_message_is_the_plans_message_in_check_mode_with_where_to_reply() -> None:
    step = second_step()

    message = StepMessage.from_plan(step, "wf", mode="check", reply_to="converge:plan:x")

    assert message.model_dump(exclude={"mode", "reply_to"}) == StepMessage.from_plan(step, "wf").model_dump(
        exclude={"mode", "reply_to"}
    )
    assert (message.mode, message.reply_to, message.attempt) == ("check", "converge:plan:x", 1)


def test_a_view_shows_a_steps_times_in_utc() -> None:
    row = row_from_plan(second_step(), "wf") | {
        "state": StepState.SUCCEEDED,
        "changed": True,
        "agent": "web-01",
        "progress": 100.0,
        "message": "written",
        "error": None,
        "started_at": 1_700_000_000.0,
        "finished_at": None,
    }

    view = view_from_row(row)

    assert view.started_at == datetime.fromtimestamp(1_700_000_000.0, UTC)
    assert (view.finished_at, view.state, view.resource, view.agent) == (
        None,
        StepState.SUCCEEDED,
        "file/index",
        "web-01",
    )


def test_the_engine_the_agents_and_an_agents_announcement_share_their_timeout_defaults() -> None:
    for field, default in [
        ("step_timeout_s", defaults.STEP_TIMEOUT_S),
        ("visibility_timeout_s", defaults.VISIBILITY_TIMEOUT_S),
    ]:
        assert Settings.model_fields[field].default == default
        assert AgentSettings.model_fields[field].default == default
    assert AgentInfo.model_fields["step_timeout_s"].default == defaults.STEP_TIMEOUT_S

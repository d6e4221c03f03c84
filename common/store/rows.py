"""A step as the store holds it (a row: a dict of its columns) and what it becomes: the one mapper.

The fields are not listed here: a plan's fields go to the columns of the same name, and a message takes
each of its fields that has a column (common.models.STEP_SOURCES). What is written here is what differs:
the names that differ, the columns held as JSON text, and a new step's first values. A new field of a
step is a column of the table (marked RUN if a step's run changes it), a field of the model that carries
it (StepPlan, StepMessage or StepView, under the column's name) and, unless the plan gives it, its first
value in `row_from_plan`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from common.models import STEP_SOURCES, StepMessage, StepState, StepView
from common.store.tables import steps

if TYPE_CHECKING:
    from workflows.plan import StepPlan

Row = dict[str, Any]

# The columns named otherwise than the plan's fields.
_COLUMN_OF_PLAN = {"index": "idx"}
# The columns that hold a list or a mapping, as JSON text.
JSON_COLUMNS = frozenset({"spec", "depends_on", "dependents", "on_change", "credentials"})
# Built once, as `message_from_row` runs for every step published: the message fields the table stores, a
# getter of their columns, and the fields among them decoded from JSON.
_STORED = [(field, column) for field, column in STEP_SOURCES if column in steps.c]
_MESSAGE_FIELDS = tuple(field for field, _ in _STORED)
_message_columns = itemgetter(*(column for _, column in _STORED))
_MESSAGE_JSON = tuple(field for field, column in _STORED if column in JSON_COLUMNS)
# The fields of a view that are times: seconds since the epoch in the store.
_VIEW_TIMES = ("started_at", "finished_at")


def row_from_plan(step: StepPlan, workflow_id: str) -> Row:
    """The row of a planned step, as its workflow is stored: its first attempt, queued unless it waits."""
    row: Row = {_COLUMN_OF_PLAN.get(field, field): value for field, value in step}
    for column in JSON_COLUMNS.intersection(row):
        row[column] = None if row[column] is None else json.dumps(row[column])
    row.update(
        workflow_id=workflow_id,
        waiting=len(step.depends_on),
        state=StepState.QUEUED if not step.depends_on else StepState.PENDING,
        attempt=1,
        epoch=0,
        last_seq=0,
        message=None,
        finished_at=None,
        changed=None,
    )
    return row


def message_from_row(row: Mapping[str, Any]) -> StepMessage:
    """The message that publishes a step's current attempt (`row` holds every column the message needs)."""
    # Equal lengths by construction: a strict zip would only cost time, on every step published.
    values = dict(zip(_MESSAGE_FIELDS, _message_columns(row), strict=False))
    for field in _MESSAGE_JSON:
        values[field] = json.loads(values[field])
    values["epoch"] = values["epoch"] or 0  # NULL in a store made before epochs
    return StepMessage.model_validate(values)


def view_from_row(row: Mapping[str, Any]) -> StepView:
    """What the API shows of a step."""
    values = {field: row[field] for field in StepView.model_fields}
    for field in _VIEW_TIMES:
        values[field] = _time(values[field])
    values["epoch"] = values["epoch"] or 0
    return StepView(**values)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)

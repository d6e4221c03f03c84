"""The store's pages for the operator console: workflows by filter and steps of one workflow, a page at a
time (LIMIT/OFFSET in SQL), so that a page costs the same with ten workflows or ten thousand.

A mixin of SqlStore, apart so that the workflow store stays readable; it only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from common.models import StepOutput, StepView, WorkflowState, WorkflowView
from common.store.rows import view_from_row
from common.store.tables import step_outputs, steps, workflows


@dataclass(frozen=True)
class WorkflowFilter:
    """Which workflows a console page lists: history or active, a state, a name's part, a creation span."""

    history: bool = False
    state: WorkflowState | None = None
    name: str = ""
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created before


class ConsoleRows:
    engine: Engine

    def workflow_page(
        self, where: WorkflowFilter, *, limit: int, offset: int = 0
    ) -> tuple[list[WorkflowView], int]:
        """One page of the workflows `where` selects, newest first, and how many it selects in all."""
        conditions: list[Any] = [workflows.c.history == where.history]
        if where.state is not None:
            conditions.append(workflows.c.state == where.state)
        if where.name:
            conditions.append(workflows.c.name.contains(where.name, autoescape=True))
        if where.since is not None:
            conditions.append(workflows.c.created_at >= where.since)
        if where.until is not None:
            conditions.append(workflows.c.created_at < where.until)
        columns = [workflows.c[c] for c in ("id", "name", "state", "created_at", "finished_at")]
        query = select(*columns).where(*conditions).order_by(workflows.c.created_at.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
            total = conn.execute(select(func.count()).select_from(workflows).where(*conditions)).scalar()
        return [_view(r) for r in rows], int(total or 0)

    def step_page(
        self, workflow_id: str, *, limit: int, offset: int = 0
    ) -> tuple[list[tuple[StepView, list[str]]], dict[str, int]]:
        """One page of a workflow's steps in plan order, each with the resources it depends on, and the
        workflow's step counts by state (the progress bar covers every step, not only the page's)."""
        query = select(steps).where(steps.c.workflow_id == workflow_id).order_by(steps.c.idx)
        counts = select(steps.c.state, func.count()).where(steps.c.workflow_id == workflow_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
            by_state = {str(s): int(n) for s, n in conn.execute(counts.group_by(steps.c.state))}
            wanted = {dep for r in rows for dep in json.loads(r["depends_on"])}
            named = select(steps.c.id, steps.c.resource).where(steps.c.id.in_(sorted(wanted)))
            resources = {i: str(res) for i, res in conn.execute(named)} if wanted else {}
        return [
            (view_from_row(dict(r)), [resources.get(d, d) for d in json.loads(r["depends_on"])]) for r in rows
        ], by_state

    def outputs_of(self, workflow_id: str, step_ids: list[str]) -> dict[str, StepOutput]:
        """What the given steps of a workflow wrote (their last finished attempt's), by step id: only
        the failed steps of the page shown, not every output of a 10,000-step workflow."""
        if not step_ids:
            return {}
        query = select(step_outputs).where(
            step_outputs.c.workflow_id == workflow_id, step_outputs.c.step_id.in_(sorted(step_ids))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {r["step_id"]: StepOutput(attempt=r["attempt"], **json.loads(r["output"])) for r in rows}


def _view(row: Any) -> WorkflowView:
    finished = row["finished_at"]
    return WorkflowView(
        id=row["id"],
        name=row["name"],
        state=WorkflowState(row["state"]),
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        finished_at=None if finished is None else datetime.fromtimestamp(finished, UTC),
    )

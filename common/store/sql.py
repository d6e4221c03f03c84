"""The SQLAlchemy store: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from common.errors import Unreachable
from common.models import (
    ACTIVE_STEP,
    FINISHED_STEP,
    StatusEvent,
    StepMessage,
    StepState,
    StepView,
    WorkflowState,
    WorkflowView,
)
from common.store.interface import RecordResult
from common.store.tables import metadata, steps, workflows

if TYPE_CHECKING:
    from workflows.plan import WorkflowPlan

_FAILED_STEP = {StepState.FAILED: WorkflowState.FAILED, StepState.TIMED_OUT: WorkflowState.ABORTED}


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def open_store(url: str, default_timeout_s: float = 3600.0) -> SqlStore:
    """Open (and create if needed) the store at a SQLAlchemy URL. Raises Unreachable with the URL."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise Unreachable(f"cannot open the store at {url}: {exc.__class__.__name__}: {exc}") from exc
    return SqlStore(engine, default_timeout_s)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SqlStore:
    """Workflows and steps in two tables; every change to a workflow happens in one transaction."""

    def __init__(self, engine: Engine, default_timeout_s: float = 3600.0) -> None:
        self.engine = engine
        self.default_timeout_s = default_timeout_s

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------------------

    def create_workflow(self, plan: WorkflowPlan, source: str) -> list[StepMessage]:
        now = time.time()
        rows = [
            {
                "id": s.id,
                "workflow_id": plan.id,
                "idx": s.index,
                "resource": s.resource,
                "kind": s.kind,
                "name": s.name,
                "role": s.role,
                "scope": s.scope,
                "spec": json.dumps(s.spec),
                "depends_on": json.dumps(s.depends_on),
                "dependents": json.dumps(s.dependents),
                "waiting": len(s.depends_on),
                "state": StepState.QUEUED if not s.depends_on else StepState.PENDING,
                "attempt": 1,
                "last_seq": 0,
                "timeout_s": s.timeout_s,
                "retry_attempts": s.retry_attempts,
                "retry_backoff_s": s.retry_backoff_s,
                "credentials": json.dumps(s.credentials),
            }
            for s in plan.steps
        ]
        state = WorkflowState.RUNNING if rows else WorkflowState.SUCCEEDED
        with self.engine.begin() as conn:
            conn.execute(
                workflows.insert(),
                {
                    "id": plan.id,
                    "name": plan.name,
                    "digest": plan.digest,
                    "state": state,
                    "history": state == WorkflowState.SUCCEEDED,
                    "created_at": now,
                    "updated_at": now,
                    "finished_at": now if not rows else None,
                    "source": source,
                },
            )
            if rows:
                conn.execute(steps.insert(), rows)
        return [self._message(r) for r in rows if r["state"] == StepState.QUEUED]

    def record(self, events: list[StatusEvent]) -> RecordResult:
        result = RecordResult()
        if not events:
            return result
        with self.engine.begin() as conn:
            rows = self._load(conn, {e.step_id for e in events})
            touched: set[str] = set()
            released: list[str] = []
            for ev in events:
                row = rows.get(ev.step_id)
                if row is None or ev.attempt != row["attempt"]:
                    result.stale += 1
                    continue
                if ev.seq <= row["last_seq"]:
                    result.duplicate += 1
                    continue
                if _apply_event(row, ev) and row["state"] == StepState.SUCCEEDED:
                    released.extend(json.loads(row["dependents"]))
                row["_dirty"] = True
                touched.add(row["workflow_id"])
                result.applied += 1
            self._save(conn, [r for r in rows.values() if r.get("_dirty")])
            result.ready = self._release(conn, released)
            result.finished = self._settle(conn, touched)
        return result

    def _load(self, conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids), 500):
            for row in conn.execute(select(steps).where(steps.c.id.in_(chunk))).mappings():
                found[row["id"]] = dict(row)
        return found

    def _save(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = ["state", "changed", "agent", "progress", "message", "error", "started_at", "finished_at"]
        cols += ["last_seq", "last_report_at"]
        stmt = (
            update(steps)
            .where(steps.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}") for c in cols})
        )
        conn.execute(stmt, [{f"b_{k}": r[k] for k in ["id", *cols]} for r in rows])

    def _release(self, conn: Connection, dependents: list[str]) -> list[StepMessage]:
        """Count down the dependents of succeeded steps; those with nothing left to wait on are queued."""
        if not dependents:
            return []
        counts: dict[str, int] = {}
        for dep in dependents:
            counts[dep] = counts.get(dep, 0) + 1
        rows = self._load(conn, counts)
        ready: list[dict[str, Any]] = []
        for step_id, row in rows.items():
            row["waiting"] = max(0, row["waiting"] - counts[step_id])
            if row["waiting"] == 0 and row["state"] == StepState.PENDING:
                row["state"] = StepState.QUEUED
                ready.append(row)
        stmt = (
            update(steps)
            .where(steps.c.id == bindparam("b_id"))
            .values(waiting=bindparam("b_waiting"), state=bindparam("b_state"))
        )
        params = [{"b_id": r["id"], "b_waiting": r["waiting"], "b_state": r["state"]} for r in rows.values()]
        conn.execute(stmt, params)
        return [self._message(r) for r in ready]

    def _settle(self, conn: Connection, workflow_ids: set[str]) -> list[str]:
        """Derive each touched workflow's state from its steps; return those that just finished."""
        finished: list[str] = []
        now = time.time()
        for wf_id in workflow_ids:
            counts = {
                StepState(state): n
                for state, n in conn.execute(
                    select(steps.c.state, func.count())
                    .where(steps.c.workflow_id == wf_id)
                    .group_by(steps.c.state)
                )
            }
            state = _workflow_state(counts)
            if state is None:
                continue
            conn.execute(
                update(workflows)
                .where(workflows.c.id == wf_id)
                .values(
                    state=state,
                    updated_at=now,
                    finished_at=now,
                    history=state == WorkflowState.SUCCEEDED,
                )
            )
            finished.append(wf_id)
        return finished

    # -- reading ---------------------------------------------------------------------------------------

    def active_by_digest(self, digest: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(workflows.c.id).where(
                    workflows.c.digest == digest,
                    workflows.c.state.in_([WorkflowState.PENDING, WorkflowState.RUNNING]),
                )
            ).first()
        return None if row is None else str(row[0])

    def workflow(self, workflow_id: str, *, steps: bool = True) -> WorkflowView | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflows).where(workflows.c.id == workflow_id)).mappings().first()
            if row is None:
                return None
            view = _workflow_view(row)
            if steps:
                view.steps = [_step_view(r) for r in self._steps_of(conn, workflow_id)]
        return view

    def _steps_of(self, conn: Connection, workflow_id: str) -> Sequence[Any]:
        query = select(steps).where(steps.c.workflow_id == workflow_id).order_by(steps.c.idx)
        return conn.execute(query).mappings().all()

    def workflows(
        self, *, history: bool = False, state: WorkflowState | None = None, limit: int = 500
    ) -> list[WorkflowView]:
        query = select(workflows).where(workflows.c.history == history)
        if state is not None:
            query = query.where(workflows.c.state == state)
        query = query.order_by(workflows.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_workflow_view(r) for r in conn.execute(query).mappings()]

    def queued(self) -> list[StepMessage]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(steps).where(steps.c.state == StepState.QUEUED)).mappings().all()
        return [self._message(dict(r)) for r in rows]

    def running_by_agent(self) -> dict[str, int]:
        query = (
            select(steps.c.agent, func.count())
            .where(steps.c.state == StepState.STARTED)
            .group_by(steps.c.agent)
        )
        with self.engine.connect() as conn:
            return {str(agent): int(n) for agent, n in conn.execute(query)}

    def _message(self, row: dict[str, Any]) -> StepMessage:
        return StepMessage(
            workflow_id=row["workflow_id"],
            step_id=row["id"],
            resource=row["resource"],
            attempt=row["attempt"],
            kind=row["kind"],
            name=row["name"],
            role=row["role"],
            scope=row["scope"],
            spec=json.loads(row["spec"]),
            credentials=json.loads(row["credentials"]),
            timeout_s=row["timeout_s"] or self.default_timeout_s,
        )


def _apply_event(row: dict[str, Any], ev: StatusEvent) -> bool:
    """Move one step row by one event. Returns True when the step reached a final state."""
    at = ev.at.timestamp()
    row["last_seq"] = ev.seq
    row["last_report_at"] = time.time()
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


def _workflow_state(counts: dict[StepState, int]) -> WorkflowState | None:
    """A final state once nothing can move any more; None while the workflow is still running."""
    if any(counts.get(s) for s in ACTIVE_STEP):
        return None
    failures = [s for s in _FAILED_STEP if counts.get(s)]
    if counts.get(StepState.CANCELLED):
        return WorkflowState.CANCELLED
    if StepState.TIMED_OUT in failures:
        return WorkflowState.ABORTED
    if failures:
        return WorkflowState.FAILED
    if counts.get(StepState.PENDING):
        return None
    return WorkflowState.SUCCEEDED


def _workflow_view(row: Any) -> WorkflowView:
    return WorkflowView(
        id=row["id"],
        name=row["name"],
        state=WorkflowState(row["state"]),
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        finished_at=_ts(row["finished_at"]),
    )


def _step_view(row: Any) -> StepView:
    return StepView(
        id=row["id"],
        resource=row["resource"],
        role=row["role"],
        state=StepState(row["state"]),
        attempt=row["attempt"],
        changed=row["changed"],
        agent=row["agent"],
        progress=row["progress"],
        message=row["message"],
        error=row["error"],
        started_at=_ts(row["started_at"]),
        finished_at=_ts(row["finished_at"]),
    )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

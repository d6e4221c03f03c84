"""The SQLAlchemy store: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    ScalarSelect,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import BindParameter

from common import lifecycle
from common.errors import BadInput, NotFound, Refused, Unreachable
from common.lifecycle import Roles, Verdict
from common.models import (
    FINISHED_WORKFLOW,
    AdmissionState,
    StatusEvent,
    StepMessage,
    StepOutput,
    StepState,
    WorkflowState,
    WorkflowView,
)
from common.settings import redact
from common.store import migrate as migrations
from common.store.console import ConsoleRows
from common.store.credentials import CredentialRows
from common.store.finished import FinishedRows, chunks
from common.store.imports import ImportRows
from common.store.interface import (
    Created,
    EnrollmentRecord,
    RecordResult,
    StaleStep,
    StopResult,
    TokenRecord,
)
from common.store.policies import PolicyRows
from common.store.rows import message_from_row, row_from_plan, view_from_row
from common.store.schedules import ScheduleRows
from common.store.stats import StatsRows
from common.store.tables import (
    ACTIVE_WORKFLOW,
    RUN_COLUMNS,
    enrollments,
    step_outputs,
    steps,
    tokens,
    workflows,
)

if TYPE_CHECKING:
    from workflows.plan import WorkflowPlan

log = logging.getLogger("converge.store")

_RETRYABLE_WORKFLOW = {WorkflowState.FAILED, WorkflowState.ABORTED, WorkflowState.CANCELLED}

# What an event can change on a step (its run), and what recording events reads: that, and what it needs
# to release dependents and retry (not the spec, which can be big).
_SAVED = RUN_COLUMNS
_EVENT_COLUMNS = [
    steps.c[name]
    for name in [
        *["id", "workflow_id", "role", "scope", "dependents", "retry_attempts", "retry_backoff_s"],
        *_SAVED,
    ]
]
# Built once: they run on every batch of status events.
_SAVE = update(steps).where(steps.c.id == bindparam("b_id")).values({c: bindparam(f"b_{c}") for c in _SAVED})
_RELEASE = (
    update(steps)
    .where(steps.c.id == bindparam("b_id"))
    .values(waiting=bindparam("b_waiting"), state=bindparam("b_state"))
)
# The statements of recording, built once: building and hashing a statement costs more than running it on
# a batch of a few events (SQLAlchemy caches the compiled form, not the construct).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_LOAD_ALL = select(steps).where(steps.c.id.in_(_IDS))
_LOAD_FOR_EVENTS = select(*_EVENT_COLUMNS).where(steps.c.id.in_(_IDS))
_WORKFLOW_STATES = select(workflows.c.id, workflows.c.state).where(workflows.c.id.in_(_IDS))
_BUSY = (
    select(steps.c.id)
    .where(
        steps.c.workflow_id == bindparam("wf"),
        steps.c.state.in_([StepState.QUEUED, StepState.STARTED]),
    )
    .limit(1)
)
_UNFINISHED_COUNTS = (
    select(steps.c.state, steps.c.not_before.is_not(None), func.count())
    .where(steps.c.workflow_id == bindparam("wf"), steps.c.state != StepState.SUCCEEDED)
    .group_by(steps.c.state, steps.c.not_before.is_not(None))
)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class Pool:
    """A PostgreSQL store's connection pool (Settings.store_pool_*); a SQLite store ignores it."""

    size: int = 5
    max_overflow: int = 10
    timeout_s: float = 30
    recycle_s: float = 1800


def open_store(url: str, *, migrate: bool = True, pool: Pool | None = None) -> SqlStore:
    """Open the store at a SQLAlchemy URL, creating or migrating its schema to head (common.store.migrate).

    With migrate=False a store behind head is refused (BadInput: run `converge engine migrate`). Raises
    Unreachable with the URL.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unreachable(
                f"cannot create the store's folder {folder} ({exc.strerror}): point CONVERGE_STORE_URL "
                "(or --store-url) at a folder this user can write"
            ) from exc
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            pool = pool or Pool()
            # A pre-ping is a round trip per transaction: worth it for a server that drops idle connections.
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=pool.size,
                max_overflow=pool.max_overflow,
                pool_timeout=pool.timeout_s,
                pool_recycle=pool.recycle_s,
            )
        result: migrations.Migration | None = None
        if migrate:
            result = migrations.upgrade_to_head(engine)
        else:
            revision, target = migrations.current_revision(engine), migrations.head()
            if revision != target:
                engine.dispose()
                raise BadInput(
                    f"the store {redact(url)} is at schema revision {revision or 'none (unversioned)'}, this "
                    f"release needs {target}: run `converge engine migrate` first (see docs/operations.md, "
                    "Upgrading the store)"
                )
    except SQLAlchemyError as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        raise Unreachable(
            f"cannot open the store at {redact(url)} ({exc.__class__.__name__}: {reason}): start the "
            "database, or point CONVERGE_STORE_URL (or --store-url) at it"
        ) from exc
    except ImportError as exc:
        raise BadInput(
            f"the store {redact(url)} needs the database driver {exc.name!r}: install it, or name another "
            "driver in CONVERGE_STORE_URL (e.g. postgresql+psycopg://...)"
        ) from exc
    store = SqlStore(engine)
    store.migration = result
    return store


def _lock_workflows(conn: Connection, ids: set[str]) -> None:
    """Lock these workflows' rows until the transaction ends (PostgreSQL's SELECT ... FOR UPDATE, in one
    order so that two transactions never wait on each other).

    Several engines record status at once, each in its own transaction: without this, two steps that a
    third depends on can succeed in two transactions that each see the other's step unfinished, and
    neither releases the third (write skew under READ COMMITTED). With the lock, the second waits for the
    first and then reads its steps. SQLite writes one transaction at a time and has no FOR UPDATE
    (SQLAlchemy leaves it out), so there the query is not even sent; several engines need PostgreSQL.
    """
    if ids and conn.dialect.name == "postgresql":
        conn.execute(
            select(workflows.c.id)
            .where(workflows.c.id.in_(sorted(ids)))
            .order_by(workflows.c.id)
            .with_for_update()
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Ids are compared exactly, and a LIKE 'prefix%' can then use the index (FinishedRows.workflow_ids).
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


class SqlStore(ConsoleRows, CredentialRows, FinishedRows, ImportRows, PolicyRows, StatsRows, ScheduleRows):
    """Workflows and steps in two tables; every change to a workflow happens in one transaction. The
    vault's tables are CredentialRows'; finding by id prefix and pruning by age are FinishedRows'; the
    agents' policies are PolicyRows'; the metrics' counts are StatsRows'; schedules are ScheduleRows'; the
    console's pages are ConsoleRows'; import sources and their machines are ImportRows'."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # what opening it migrated (common.store.migrate), None when it was not asked to
        self.migration: migrations.Migration | None = None
        # The engine is the one writer, from several threads (API, ingester, watchdog): its writes are
        # read-modify-write transactions, serialised here so that none is lost on any backend.
        self._write = threading.Lock()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------------------

    def create_workflow(self, plan: WorkflowPlan, source: str) -> Created:
        """Store a planned workflow, unless one converging to the same desired state is still active.

        The check and the insert are one transaction under the write lock; the partial unique index on the
        digest of active workflows holds them together across processes too (the loser returns the winner).
        """
        rows = [row_from_plan(step, plan.id) for step in plan.steps]
        _skip_untriggered(rows, time.time())
        try:
            with self._write, self.engine.begin() as conn:
                existing = self._active(conn, plan.digest)
                if existing is not None:
                    return Created(existing, created=False)
                self._insert(conn, plan, source, rows)
        except IntegrityError:
            existing = self.active_by_digest(plan.digest)
            if existing is None:
                raise
            return Created(existing, created=False)
        ready = (message_from_row(r) for r in rows if r["state"] == StepState.QUEUED)
        return Created(plan.id, created=True, ready=ready)

    def _insert(self, conn: Connection, plan: WorkflowPlan, source: str, rows: list[dict[str, Any]]) -> None:
        now = time.time()
        state = WorkflowState.RUNNING if rows else WorkflowState.SUCCEEDED
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

    def record(self, events: list[StatusEvent], roles: Mapping[str, Roles] | None = None) -> RecordResult:
        result = RecordResult()
        roles = roles or {}
        if not events:
            return result
        with self._write, self.engine.begin() as conn:
            _lock_workflows(conn, {e.workflow_id for e in events})
            rows = self._load(conn, {e.step_id for e in events}, _LOAD_FOR_EVENTS)
            states = self._workflow_states(conn, {r["workflow_id"] for r in rows.values()})
            released: list[str] = []
            aborted: list[str] = []
            moved: set[str] = set()  # workflows in which a step reached a final state
            outputs: dict[str, dict[str, Any]] = {}  # the output of each attempt that finished
            now = time.time()
            for ev in events:
                row = rows.get(ev.step_id)
                attempt = None if row is None else row["attempt"]
                verdict = Verdict.STALE if row is None else lifecycle.take(row, ev, now, roles.get(ev.agent))
                if _not_applied(result, verdict, ev):
                    continue
                assert row is not None and attempt is not None
                row["_dirty"] = True
                result.applied += 1
                if verdict is Verdict.LATE_SUCCESS:  # the queued attempt is not needed any more
                    result.to_stop.append((row["id"], attempt))
                elif verdict is not Verdict.FINISHED:
                    continue
                outputs.update(_output_row(row, ev))
                wf_id = row["workflow_id"]
                moved.add(wf_id)
                if states[wf_id] != WorkflowState.RUNNING:
                    continue
                if row["state"] == StepState.SUCCEEDED:
                    released.extend(json.loads(row["dependents"]))
                elif row["state"] == StepState.FAILED and lifecycle.retry(row, ev, now):
                    result.retrying += 1
                elif row["state"] == StepState.TIMED_OUT:
                    result.to_stop += self._stop(conn, wf_id, WorkflowState.ABORTED).to_stop
                    states[wf_id] = WorkflowState.ABORTED
                    result.finished.append(wf_id)
                    aborted.append(wf_id)
            self._save(conn, [r for r in rows.values() if r.get("_dirty")])
            for wf_id in aborted:  # once the step that timed out is saved as such
                self._skip_waiting(conn, wf_id, now)
            self._keep_outputs(conn, outputs)
            result.ready = self._release(conn, released)
            result.finished += self._settle(conn, {wf: states[wf] for wf in moved})
        return result

    def _keep_outputs(self, conn: Connection, outputs: dict[str, dict[str, Any]]) -> None:
        """Each step's last finished attempt's output replaces the one before."""
        if outputs:
            conn.execute(step_outputs.delete().where(step_outputs.c.step_id.in_(list(outputs))))
            conn.execute(step_outputs.insert(), list(outputs.values()))

    def _workflow_states(self, conn: Connection, ids: set[str]) -> dict[str, WorkflowState]:
        if not ids:
            return {}
        return {
            wf_id: WorkflowState(state) for wf_id, state in conn.execute(_WORKFLOW_STATES, {"ids": list(ids)})
        }

    def cancel(self, workflow_id: str) -> StopResult:
        """Cancel a workflow: queued steps never start, running ones are to be stopped by their agents."""
        with self._write, self.engine.begin() as conn:
            _lock_workflows(conn, {workflow_id})
            state = self._workflow_states(conn, {workflow_id}).get(workflow_id)
            if state is None:
                raise NotFound(f"no workflow {workflow_id}")
            if state in FINISHED_WORKFLOW:
                raise Refused(f"workflow {workflow_id} already {state}: there is nothing to cancel")
            result = self._stop(conn, workflow_id, WorkflowState.CANCELLING)
            self._settle(conn, {workflow_id: WorkflowState.CANCELLING})
        return result

    def _stop(self, conn: Connection, workflow_id: str, state: WorkflowState) -> StopResult:
        """Cancel the steps that could have started; list every attempt the agents must stop (or drop).

        Steps still waiting on a dependency are not cancelled: they are skipped, with the reason, once
        the workflow's end is known (`_skip_waiting`).
        """
        now = time.time()
        query = select(steps.c.id, steps.c.attempt, steps.c.state, steps.c.waiting).where(
            steps.c.workflow_id == workflow_id,
            steps.c.state.in_([StepState.PENDING, StepState.QUEUED, StepState.STARTED]),
        )
        found = conn.execute(query).all()
        ready = [step_id for step_id, _, st, waiting in found if st != StepState.STARTED and not waiting]
        for chunk in chunks(ready, 500):
            conn.execute(
                update(steps)
                .where(steps.c.id.in_(chunk))
                .values(
                    state=StepState.CANCELLED, finished_at=now, not_before=None, message=f"workflow {state}"
                )
            )
        finished_at = now if state in FINISHED_WORKFLOW else None
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(state=state, updated_at=now, finished_at=finished_at)
        )
        return StopResult(
            to_stop=[(step_id, attempt) for step_id, attempt, st, _ in found if st != StepState.PENDING]
        )

    def _skip_waiting(self, conn: Connection, workflow_id: str, now: float) -> None:
        """Skip the steps of an ended workflow that still wait on a dependency, saying which one."""
        c = steps.c
        waiting = {
            step_id: json.loads(deps)
            for step_id, deps in conn.execute(
                select(c.id, c.depends_on).where(
                    c.workflow_id == workflow_id, c.state == StepState.PENDING, c.waiting > 0
                )
            )
        }
        if not waiting:
            return
        needed = {d for deps in waiting.values() for d in deps}
        found: dict[str, tuple[str, str]] = {}
        for chunk in chunks(list(needed), 500):
            query = select(c.id, c.resource, c.state).where(c.id.in_(chunk))
            found.update({step_id: (resource, st) for step_id, resource, st in conn.execute(query)})
        skip = update(steps).where(c.id == bindparam("b_id"))
        conn.execute(
            skip.values(state=StepState.SKIPPED, finished_at=now, message=bindparam("b_message")),
            [{"b_id": i, "b_message": m} for i, m in lifecycle.skip_reasons(waiting, found).items()],
        )

    def retry(self, workflow_id: str) -> list[StepMessage]:
        """Run a failed, aborted or cancelled workflow again: each step not yet succeeded, a new attempt."""
        with self._write, self.engine.begin() as conn:
            _lock_workflows(conn, {workflow_id})
            state = self._workflow_states(conn, {workflow_id}).get(workflow_id)
            if state is None:
                raise NotFound(f"no workflow {workflow_id}")
            if state not in _RETRYABLE_WORKFLOW:
                raise Refused(
                    f"workflow {workflow_id} is {state}: only failed, aborted or cancelled ones retry"
                )
            digest = select(workflows.c.digest).where(workflows.c.id == workflow_id).scalar_subquery()
            twin = self._active(conn, digest)
            if twin is not None:  # one active workflow per desired state (see create_workflow)
                raise Refused(
                    f"workflow {twin} is applying the same desired state now: follow it, or retry "
                    f"{workflow_id} once it has finished"
                )
            rows = {r["id"]: dict(r) for r in self._steps_of(conn, workflow_id)}
            done = lifecycle.kept_on_retry(rows)
            again = [r for r in rows.values() if r["id"] not in done]
            for row in again:
                row["waiting"] = sum(1 for dep in json.loads(row["depends_on"]) if dep not in done)
                lifecycle.reset(
                    row, row["attempt"] + 1, StepState.QUEUED if row["waiting"] == 0 else StepState.PENDING
                )
                row["not_before"] = None
            self._save(conn, again)
            conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(state=WorkflowState.RUNNING, finished_at=None, history=False, updated_at=time.time())
            )
        return [message_from_row(r) for r in again if r["state"] == StepState.QUEUED]

    def due_retries(self, now: float) -> list[StepMessage]:
        """Steps whose retry backoff has passed, now marked `queued`: publish them."""
        query = select(steps).where(steps.c.state == StepState.PENDING, steps.c.not_before <= now)
        with self.engine.connect() as conn:  # the watchdog asks often: look before taking the write lock
            if conn.execute(query.with_only_columns(steps.c.id).limit(1)).first() is None:
                return []
        with self._write, self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            for row in rows:
                row["state"], row["not_before"] = StepState.QUEUED, None
            self._save(conn, rows)
        return [message_from_row(r) for r in rows]

    def started(self) -> list[StaleStep]:
        """Every running step with when it last reported: what the watchdog looks at."""
        c = steps.c
        query = (
            select(c.id, c.workflow_id, c.attempt, c.agent, c.last_report_at, c.timeout_s, workflows.c.state)
            .join(workflows, workflows.c.id == c.workflow_id)
            .where(c.state == StepState.STARTED)
        )
        with self.engine.connect() as conn:
            return [StaleStep(*row[:-1], WorkflowState(row[-1])) for row in conn.execute(query)]

    def _load(
        self, conn: Connection, ids: Iterable[str], query: Select[Any] = _LOAD_ALL
    ) -> dict[str, dict[str, Any]]:
        """The rows of these steps, by id: `query` selects by the expanding parameter `ids`."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(ids), 500):
            for row in conn.execute(query, {"ids": chunk}).mappings():
                found[row["id"]] = dict(row)
        return found

    def _save(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(_SAVE, [{f"b_{k}": r[k] for k in ["id", *_SAVED]} for r in rows])

    def _release(self, conn: Connection, dependents: list[str]) -> list[StepMessage]:
        """Count down the dependents of finished steps; those with nothing left to wait on are queued, or
        skipped by their `on_change`, which releases their own dependents in turn."""
        ready: list[dict[str, Any]] = []
        while dependents:
            counts = Counter(dependents)
            rows = self._load(conn, counts)
            free: list[dict[str, Any]] = []
            for step_id, row in rows.items():
                row["waiting"] = max(0, row["waiting"] - counts[step_id])
                if row["waiting"] == 0 and row["state"] == StepState.PENDING:
                    free.append(row)
            run, skipped = self._gate(conn, free)
            for row in run:
                row["state"] = StepState.QUEUED
            params = [
                {"b_id": r["id"], "b_waiting": r["waiting"], "b_state": r["state"]} for r in rows.values()
            ]
            conn.execute(_RELEASE, params)
            self._save(conn, skipped)
            ready += run
            dependents = [dep for row in skipped for dep in json.loads(row["dependents"])]
        return [message_from_row(r) for r in ready]

    def _gate(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split steps free to run into those that run and those their `on_change` skips, now marked so
        (the decision is lifecycle.on_change_verdict's, on the triggers' recorded `changed`)."""
        gated = [r for r in rows if r.get("on_change") is not None]
        if not gated:
            return rows, []
        triggers = {r["id"]: json.loads(r["on_change"]) for r in gated}
        found: dict[str, tuple[str, bool | None]] = {}
        c = steps.c
        for chunk in chunks(list({t for ids in triggers.values() for t in ids}), 500):
            query = select(c.id, c.resource, c.changed).where(c.id.in_(chunk))
            found.update({step_id: (resource, changed) for step_id, resource, changed in conn.execute(query)})
        run: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        now = time.time()
        for row in rows:
            reason = (
                None if row["id"] not in triggers else lifecycle.on_change_verdict(triggers[row["id"]], found)
            )
            if reason is None:
                run.append(row)
                continue
            row.update(state=StepState.SKIPPED, message=reason, finished_at=now, changed=False)
            skipped.append(row)
        return run, skipped

    def _settle(self, conn: Connection, current: dict[str, WorkflowState]) -> list[str]:
        """Derive the state of unfinished workflows from their steps; return those that just finished.

        Only the steps not yet succeeded are counted (an index on workflow and state finds them), so
        settling gets cheaper as a workflow progresses.
        """
        finished: list[str] = []
        now = time.time()
        for wf_id, state in current.items():
            if state in FINISHED_WORKFLOW or self._busy(conn, wf_id):
                continue
            counts: dict[StepState, int] = {}
            retrying = 0
            for step_state, backing_off, n in conn.execute(_UNFINISHED_COUNTS, {"wf": wf_id}):
                counts[StepState(step_state)] = counts.get(StepState(step_state), 0) + n
                retrying += n if backing_off else 0
            final = lifecycle.workflow_state(counts, retrying, cancelling=state == WorkflowState.CANCELLING)
            if final is None:
                continue
            conn.execute(
                update(workflows)
                .where(workflows.c.id == wf_id)
                .values(
                    state=final, updated_at=now, finished_at=now, history=final == WorkflowState.SUCCEEDED
                )
            )
            if counts.get(StepState.PENDING):
                self._skip_waiting(conn, wf_id, now)
            finished.append(wf_id)
        return finished

    def _busy(self, conn: Connection, workflow_id: str) -> bool:
        """Whether a step of the workflow is queued or running: an index seek, cheaper than counting."""
        return conn.execute(_BUSY, {"wf": workflow_id}).first() is not None

    # -- reading ---------------------------------------------------------------------------------------

    def active_by_digest(self, digest: str) -> str | None:
        with self.engine.connect() as conn:
            return self._active(conn, digest)

    def _active(self, conn: Connection, digest: str | ScalarSelect[Any]) -> str | None:
        """The pending or running workflow with this digest (a value, or a query giving one)."""
        query = select(workflows.c.id).where(
            workflows.c.digest == digest, workflows.c.state.in_(ACTIVE_WORKFLOW)
        )
        row = conn.execute(query).first()
        return None if row is None else str(row[0])

    def workflow(self, workflow_id: str, *, steps: bool = True) -> WorkflowView | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflows).where(workflows.c.id == workflow_id)).mappings().first()
            if row is None:
                return None
            view = _workflow_view(row)
            if steps:
                view.steps = [view_from_row(r) for r in self._steps_of(conn, workflow_id)]
        return view

    def outputs(self, workflow_id: str) -> dict[str, StepOutput]:
        """What each finished step of a workflow wrote, by step id: its last finished attempt's."""
        query = select(step_outputs).where(step_outputs.c.workflow_id == workflow_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {r["step_id"]: StepOutput(attempt=r["attempt"], **json.loads(r["output"])) for r in rows}

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
        return [message_from_row(dict(r)) for r in rows]

    def running_by_agent(self) -> dict[str, int]:
        query = (
            select(steps.c.agent, func.count())
            .where(steps.c.state == StepState.STARTED)
            .group_by(steps.c.agent)
        )
        with self.engine.connect() as conn:
            return {str(agent): int(n) for agent, n in conn.execute(query)}

    # -- operator tokens -------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, digest: str) -> TokenRecord:
        record = TokenRecord(name=name, role=role, created_at=time.time(), last_used_at=None)
        try:
            with self._write, self.engine.begin() as conn:
                conn.execute(tokens.insert().values(digest=digest, **asdict(record)))
        except IntegrityError:
            raise Refused(
                f"a token named {name!r} exists: revoke it first (`converge tokens revoke {name}`) or pick "
                "another name"
            ) from None
        return record

    def tokens(self) -> list[TokenRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_TOKEN_COLUMNS).order_by(tokens.c.name)).mappings().all()
        return [TokenRecord(**r) for r in rows]

    def token_by_digest(self, digest: str) -> TokenRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_TOKEN_COLUMNS).where(tokens.c.digest == digest)).mappings().first()
        return None if row is None else TokenRecord(**row)

    def touch_token(self, name: str, now: float) -> None:
        with self._write, self.engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.name == name).values(last_used_at=now))

    def revoke_token(self, name: str) -> None:
        with self._write, self.engine.begin() as conn:
            if conn.execute(tokens.delete().where(tokens.c.name == name)).rowcount == 0:
                raise NotFound(f"no token named {name!r}: `converge tokens list` shows them")

    # -- agents' enrollments ---------------------------------------------------------------------------

    def enroll(self, record: EnrollmentRecord) -> EnrollmentRecord:
        with self._write, self.engine.begin() as conn:
            row = conn.execute(select(enrollments).where(enrollments.c.id == record.id)).mappings().first()
            known = None if row is None else _enrollment(row)
            if known is not None and known.public_key == record.public_key:
                # the same agent again: what it tells of its host now (a fixed capability document, which a
                # retried import validates), its decision unchanged
                facts = {"capabilities": json.dumps(record.capabilities), "last_seen_at": record.last_seen_at}
                conn.execute(enrollments.update().where(enrollments.c.id == record.id).values(**facts))
                return replace(known, capabilities=record.capabilities, last_seen_at=record.last_seen_at)
            if known is not None and known.state != "revoked":
                raise Refused(
                    f"agent {record.id!r} enrolled with another key, and this is not that agent: give it "
                    f"another id, or, if its host was rebuilt, revoke the old one first (`converge agents "
                    f"revoke {record.id}`) and enroll again"
                )
            if known is not None:  # a revoked agent's host, rebuilt: its new key waits for the operator
                conn.execute(enrollments.delete().where(enrollments.c.id == record.id))
            conn.execute(enrollments.insert().values(**_enrollment_row(record)))
        return record

    def enrollment(self, agent_id: str) -> EnrollmentRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(enrollments).where(enrollments.c.id == agent_id)).mappings().first()
        return None if row is None else _enrollment(row)

    def enrollments(self) -> list[EnrollmentRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(enrollments).order_by(enrollments.c.id)).mappings().all()
        return [_enrollment(r) for r in rows]

    def set_enrollment_state(self, agent_id: str, state: AdmissionState, now: float) -> None:
        change = update(enrollments).where(enrollments.c.id == agent_id).values(state=state, updated_at=now)
        with self._write, self.engine.begin() as conn:
            if conn.execute(change).rowcount == 0:
                raise NotFound(f"agent {agent_id!r} never enrolled: `converge agents list` shows who waits")

    def saw_enrollment(self, agent_id: str, now: float) -> None:
        with self._write, self.engine.begin() as conn:
            conn.execute(update(enrollments).where(enrollments.c.id == agent_id).values(last_seen_at=now))


_TOKEN_COLUMNS = [tokens.c.name, tokens.c.role, tokens.c.created_at, tokens.c.last_used_at]


def _skip_untriggered(rows: list[dict[str, Any]], now: float) -> None:
    """Skip, before they are stored, the steps whose `on_change` triggers made no step (an `each` resource
    without a live agent): nothing they follow can change. Their dependents are freed in turn."""
    by_id = {row["id"]: row for row in rows}
    free = [row for row in rows if row["state"] == StepState.QUEUED and row.get("on_change") is not None]
    while free:
        row = free.pop()
        found = {t: (by_id[t]["resource"], by_id[t]["changed"]) for t in json.loads(row["on_change"])}
        row.update(state=StepState.SKIPPED, finished_at=now, changed=False)
        row["message"] = lifecycle.on_change_verdict(list(found), found)
        for dep in json.loads(row["dependents"]):
            dependent = by_id[dep]
            dependent["waiting"] -= 1
            if dependent["waiting"] == 0:
                dependent["state"] = StepState.QUEUED
                if dependent.get("on_change") is not None:  # all it follows was skipped: nothing changed
                    free.append(dependent)


def _not_applied(result: RecordResult, verdict: Verdict, ev: StatusEvent) -> bool:
    """Count an event that changed nothing (refused, stale, duplicate); False for one that did."""
    if verdict is Verdict.REFUSED:
        result.refused.append(ev)
    elif verdict is Verdict.STALE:
        result.stale += 1
    elif verdict is Verdict.DUPLICATE:
        result.duplicate += 1
    else:
        return False
    return True


def _output_row(row: dict[str, Any], ev: StatusEvent) -> dict[str, dict[str, Any]]:
    """The step_outputs row of a finished attempt's output, by step id (none if it sent no output)."""
    if ev.output is None:
        return {}
    output = {"workflow_id": row["workflow_id"], "attempt": ev.attempt, "output": json.dumps(ev.output)}
    return {ev.step_id: {"step_id": ev.step_id, **output}}


def _enrollment_row(record: EnrollmentRecord) -> dict[str, Any]:
    row = asdict(record)
    return row | {"roles": json.dumps(record.roles), "capabilities": json.dumps(record.capabilities)}


def _enrollment(row: Any) -> EnrollmentRecord:
    return EnrollmentRecord(
        **{**row, "roles": json.loads(row["roles"]), "capabilities": json.loads(row["capabilities"])}
    )


def _workflow_view(row: Any) -> WorkflowView:
    return WorkflowView(
        id=row["id"],
        name=row["name"],
        state=WorkflowState(row["state"]),
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        finished_at=_ts(row["finished_at"]),
    )

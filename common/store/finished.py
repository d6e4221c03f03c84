"""The store's reading and pruning of workflows by id prefix and by age: history (succeeded workflows) and
the finished ones that did not succeed (failed, aborted, cancelled), each kept for its own retention.

A mixin of SqlStore, apart so that the workflow store stays readable; it loads and deletes only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from sqlalchemy import ColumnElement, Connection, Engine, func, select

from common.models import WorkflowState
from common.store.tables import step_outputs, steps, workflows

# Finished but not succeeded: what `failed_retention_days` applies to. Such a workflow stays out of history
# (it may be retried); once retried it is running again and no retention applies to it.
UNSUCCEEDED = (WorkflowState.FAILED.value, WorkflowState.ABORTED.value, WorkflowState.CANCELLED.value)
LIKE_ESCAPE = "\\"


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with `prefix`, its own `%`, `_` and escapes taken literally."""
    escaped = prefix.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", r"\%").replace("_", r"\_")
    return escaped + "%"


class FinishedRows:
    """Workflows found by id prefix, counted and pruned by age, for a store that holds an SQLAlchemy engine
    and serialises its writes."""

    engine: Engine
    _write: threading.Lock

    def workflow_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """The ids (active or in history) that start with `prefix`, in order; at most `limit` of them.

        A LIKE whose pattern is a literal prefix: an index range on SQLite, whose connections make LIKE
        case-sensitive (common.store.sql); ids are compared exactly, as everywhere else.
        """
        query = (
            select(workflows.c.id)
            .where(workflows.c.id.like(like_prefix(prefix), escape=LIKE_ESCAPE))
            .order_by(workflows.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(row[0]) for row in conn.execute(query)]

    def count_workflows(self, *, history: bool, finished_before: float | None = None) -> int:
        """How many workflows are in history (or not), of those only the ones finished before a time."""
        query = select(func.count()).select_from(workflows).where(workflows.c.history.is_(history))
        if finished_before is not None:
            query = query.where(workflows.c.finished_at < finished_before)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def prune(self, finished_before: float) -> int:
        """Delete history (succeeded workflows) finished before a time; returns how many workflows went."""
        return self._prune(workflows.c.history.is_(True), workflows.c.finished_at < finished_before)

    def prune_unsucceeded(self, finished_before: float) -> int:
        """Delete failed, aborted and cancelled workflows finished before a time; returns how many went."""
        return self._prune(
            workflows.c.history.is_(False),
            workflows.c.state.in_(UNSUCCEEDED),
            workflows.c.finished_at < finished_before,
        )

    def _prune(self, *where: ColumnElement[bool]) -> int:
        """Delete the workflows that match, with their steps and their steps' outputs, in one transaction."""
        with self._write, self.engine.begin() as conn:
            ids = [row[0] for row in conn.execute(select(workflows.c.id).where(*where))]
            _delete(conn, ids)
        return len(ids)


def _delete(conn: Connection, ids: list[str]) -> None:
    for chunk in chunks(ids, 500):
        conn.execute(step_outputs.delete().where(step_outputs.c.workflow_id.in_(chunk)))
        conn.execute(steps.delete().where(steps.c.workflow_id.in_(chunk)))
        conn.execute(workflows.delete().where(workflows.c.id.in_(chunk)))


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    """`items` in lists of at most `size`: what one `IN (...)` may hold on every backend."""
    for start in range(0, len(items), size):
        yield items[start : start + size]

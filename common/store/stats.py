"""The store's counts for the engine's metrics: steps by state and kind, workflows by state, and the run
times of finished steps as histogram buckets, each in one aggregate query.

A mixin of SqlStore, apart so that the workflow store stays readable; it only reads. The figures are the
store's own, so that a scrape of `/metrics` matches what `converge workflows` shows, on every engine that
shares the store and across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, and_, case, func, select

from common.store.tables import steps, workflows


class StatsRows:
    engine: Engine

    def step_counts(self) -> dict[tuple[str, str], int]:
        """How many steps the store holds, by (state, kind)."""
        query = select(steps.c.state, steps.c.kind, func.count()).group_by(steps.c.state, steps.c.kind)
        with self.engine.connect() as conn:
            return {(state, kind): n for state, kind, n in conn.execute(query)}

    def workflow_counts(self) -> dict[str, int]:
        """How many workflows the store holds, by state."""
        query = select(workflows.c.state, func.count()).group_by(workflows.c.state)
        with self.engine.connect() as conn:
            return {state: n for state, n in conn.execute(query)}

    def step_durations(self, bounds: Sequence[float]) -> dict[tuple[str, str], tuple[list[int], int, float]]:
        """Finished steps by (kind, state): how many ran at most each of `bounds` seconds (cumulative, as
        Prometheus buckets count), how many in all, and the sum of their run times."""
        took = steps.c.finished_at - steps.c.started_at
        timed = and_(steps.c.started_at.is_not(None), steps.c.finished_at.is_not(None))
        columns = [func.sum(case((took <= bound, 1), else_=0)) for bound in bounds]
        query = (
            select(steps.c.kind, steps.c.state, func.count(), func.sum(took), *columns)
            .where(timed)
            .group_by(steps.c.kind, steps.c.state)
        )
        with self.engine.connect() as conn:
            return {
                (kind, state): ([int(b or 0) for b in buckets], n, float(total or 0.0))
                for kind, state, n, total, *buckets in conn.execute(query)
            }

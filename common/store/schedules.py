"""The store's part of schedules (engine.scheduler) and their compliance reports. A mixin of SqlStore; it
loads and saves only: what a check found is decided by engine.compliance."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, select, update

from common.store.interface import ScheduleRecord
from common.store.tables import schedules

MAX_CLAIMED = 16  # schedules one engine checks per tick; the rest wait for the next tick


class ScheduleRows:
    """The schedules table, for a store that holds an SQLAlchemy engine and serialises its writes."""

    engine: Engine
    _write: threading.Lock

    def set_schedule(self, record: ScheduleRecord) -> bool:
        row = asdict(record) | {"report": json.dumps(record.report)}
        with self._write, self.engine.begin() as conn:
            replaced = conn.execute(schedules.delete().where(schedules.c.name == record.name)).rowcount
            conn.execute(schedules.insert(), [row])
        return bool(replaced)

    def schedules(self) -> list[ScheduleRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.name)).mappings().all()
        return [_record(row) for row in rows]

    def remove_schedule(self, name: str) -> bool:
        with self._write, self.engine.begin() as conn:
            return bool(conn.execute(schedules.delete().where(schedules.c.name == name)).rowcount)

    def claim_due(self, now: float) -> list[ScheduleRecord]:
        claimed = []
        with self._write, self.engine.begin() as conn:
            due = conn.execute(
                select(schedules)
                .where(schedules.c.next_at <= now)
                .order_by(schedules.c.next_at)
                .limit(MAX_CLAIMED)
            ).mappings()
            for row in list(due):
                # Moved on only if no other engine moved it first: the one whose update counts checks it.
                moved = conn.execute(
                    update(schedules)
                    .where(schedules.c.name == row["name"], schedules.c.next_at == row["next_at"])
                    .values(next_at=now + row["every_s"])
                ).rowcount
                if moved:
                    claimed.append(_record(row))
        return claimed

    def save_check(
        self,
        name: str,
        state: str,
        report: list[dict[str, Any]],
        error: str | None,
        workflow_id: str | None,
        now: float,
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "report": json.dumps(report),
            "error": error,
            "checked_at": now,
        }
        if workflow_id is not None:
            values["workflow_id"] = workflow_id
        with self._write, self.engine.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.name == name).values(**values))


def _record(row: Any) -> ScheduleRecord:
    return ScheduleRecord(**{**row, "report": json.loads(row["report"])})

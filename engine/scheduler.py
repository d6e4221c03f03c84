"""Continuous compliance: desired states checked again at an interval (`converge schedule`).

Each check is a plan run by the agents (Engine.plan), recorded as a compliance report (engine.compliance):
which resources drifted, their diffs, since when. A `report` schedule only records; an `enforce` schedule
applies the desired state again when it drifted, as an ordinary workflow, which corrects only what drifted
since every step is idempotent. Schedules live in the store: whichever engine claims a due one checks it
(common.store.schedules), so engines sharing a store never check one twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel

from common import durations
from common.errors import BadInput, NotFound
from common.store.interface import ScheduleRecord, TokenRecord
from engine import compliance
from engine.answers import UnicodeText
from engine.core import Engine
from workflows.spec import load_text

log = logging.getLogger("converge.engine.scheduler")

TICK_S = 1.0
LEAST_EVERY_S = 1.0
SCHEDULES_ROUTE = "/v1/schedules"


class ScheduleBody(BaseModel):
    source: UnicodeText
    filename: UnicodeText = "<api>"
    every: str
    mode: str = "report"


class Scheduler:
    """Checks the due schedules, one engine thread; `run` until `stop`."""

    def __init__(
        self, engine: Engine, tick_s: float = TICK_S, leading: Callable[[], bool] = lambda: True
    ) -> None:
        self.engine = engine
        self.leading = leading  # whether this engine holds the singleton duties now (engine.duties)
        self.tick_s = tick_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if not self.leading():
                continue
            try:
                for record in self.engine.store.claim_due(time.time()):
                    self.check(record)
            except Exception:  # the store or Redis is down: the next tick tries again
                log.exception("cannot check the due schedules")

    def stop(self) -> None:
        self._stop.set()

    def check(self, record: ScheduleRecord) -> None:
        """Plan the desired state on the agents, record what drifted, and correct it when enforcing."""
        store = self.engine.store
        try:
            results = self.engine.plan(record.source, record.filename)
        except Exception as exc:  # no agent answered, Redis is down, the kinds changed...
            log.warning("schedule %s: cannot check it: %s", record.name, exc)
            store.save_check(record.name, compliance.ERROR, record.report, str(exc), None, time.time())
            return
        state, entries = compliance.report(results, record.report, time.time())
        workflow_id = None
        if state == compliance.DRIFTED:
            names = ", ".join(e["resource"] for e in entries if "action" in e)
            log.warning(
                "schedule %s: %d resources drifted: %s", record.name, compliance.drifted(entries), names
            )
            if record.mode == "enforce":
                workflow_id = self.engine.apply(record.source, record.filename).workflow.id
                log.warning("schedule %s: enforcing it with workflow %s", record.name, workflow_id)
        error = "; ".join(f"{e['resource']}: {e['error']}" for e in entries if "error" in e) or None
        store.save_check(record.name, state, entries, error, workflow_id, time.time())


def make_record(body: ScheduleBody, set_by: str, engine: Engine, now: float) -> ScheduleRecord:
    """A new schedule from the operator's request; BadInput for a bad file, interval or mode."""
    if body.mode not in compliance.MODES:
        raise BadInput(f"mode {body.mode!r} is not one of {', '.join(compliance.MODES)}")
    every_s = durations.parse(body.every, least_s=LEAST_EVERY_S, what="--every")
    desired = load_text(body.source, body.filename, engine.registry)
    return ScheduleRecord(
        name=desired.metadata.name,
        source=body.source,
        filename=body.filename,
        every_s=every_s,
        mode=body.mode,
        set_by=set_by,
        set_at=now,
        next_at=now,  # checked at once: the operator sees where the estate stands
        checked_at=None,
        state=compliance.PENDING,
        report=[],
        error=None,
        workflow_id=None,
    )


def view(record: ScheduleRecord) -> dict[str, Any]:
    """A schedule as the API shows it: without its source, with its drifted count."""
    return {
        "name": record.name,
        "filename": record.filename,
        "every_s": record.every_s,
        "every": durations.shown(record.every_s),
        "mode": record.mode,
        "set_by": record.set_by,
        "set_at": _iso(record.set_at),
        "next_at": _iso(record.next_at),
        "checked_at": _iso(record.checked_at),
        "state": record.state,
        "drifted": compliance.drifted(record.report),
        "report": [{**e, "since": _iso(e["since"])} if "since" in e else e for e in record.report],
        "error": record.error,
        "workflow_id": record.workflow_id,
    }


def _iso(at: float | None) -> str | None:
    """Times as every JSON document of the CLI gives them: ISO 8601 with a time zone."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def install_routes(api: FastAPI, engine: Engine) -> None:
    @api.put(SCHEDULES_ROUTE)
    def set_schedule(body: ScheduleBody, request: Request) -> dict[str, Any]:
        caller: TokenRecord = request.state.caller
        record = make_record(body, caller.name, engine, time.time())
        replaced = engine.store.set_schedule(record)
        log.warning(
            "schedule %s set by %s: every %s, %s",
            record.name,
            caller.name,
            durations.shown(record.every_s),
            record.mode,
        )
        return {"schedule": view(record), "replaced": replaced}

    @api.get(SCHEDULES_ROUTE)
    def schedules() -> dict[str, Any]:
        return {"schedules": [view(r) for r in engine.store.schedules()]}

    @api.delete(SCHEDULES_ROUTE + "/{name}")
    def remove_schedule(name: str, request: Request) -> dict[str, str]:
        if not engine.store.remove_schedule(name):
            known = ", ".join(r.name for r in engine.store.schedules()) or "none"
            raise NotFound(f"no schedule named {name!r} (known: {known})")
        log.warning("schedule %s removed by %s", name, request.state.caller.name)
        return {"removed": name}

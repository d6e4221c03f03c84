"""The store's part of import sources and the machines they list (engine.imports). A mixin of SqlStore; it
loads and saves only: what a poll changes is decided by engine.imports.seen."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from common.store.tables import catalogs, import_sources, machines

MACHINE_STATES = ("discovered", "importing", "imported", "failed", "removed")


@dataclass(frozen=True)
class SourceRecord:
    name: str
    kind: str  # ldap, inventory
    config: dict[str, Any]
    every_s: float
    set_by: str
    set_at: float
    next_at: float
    polled_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class MachineRecord:
    source: str
    name: str
    catalog: str
    state: str
    workflow_id: str | None
    differences: list[str]
    seen_at: float
    changed_at: float


@dataclass(frozen=True)
class CatalogRecord:
    """A catalog: machines validated against `expected` (a capability document), or against the document
    of the `reference` machine's agent; their agents are admitted with `roles`."""

    name: str
    expected: str | None
    reference: str | None
    roles: list[str]
    set_at: float


class ImportRows:
    """The import sources and machines tables, for a store that holds an SQLAlchemy engine and serialises
    its writes."""

    engine: Engine
    _write: threading.Lock

    def add_source(self, record: SourceRecord) -> bool:
        """Adds or replaces a source; True if it replaced one."""
        row = asdict(record) | {"config": json.dumps(record.config, sort_keys=True)}
        with self._write, self.engine.begin() as conn:
            gone = import_sources.c.name == record.name
            replaced = conn.execute(import_sources.delete().where(gone)).rowcount
            conn.execute(import_sources.insert(), [row])
        return bool(replaced)

    def import_sources(self) -> list[SourceRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(import_sources).order_by(import_sources.c.name)).mappings().all()
        return [SourceRecord(**{**row, "config": json.loads(row["config"])}) for row in rows]

    def remove_source(self, name: str) -> bool:
        """Removes the source; its machines stay listed, so an operator still sees what it imported."""
        with self._write, self.engine.begin() as conn:
            return bool(conn.execute(import_sources.delete().where(import_sources.c.name == name)).rowcount)

    def claim_due_sources(self, now: float) -> list[SourceRecord]:
        """The sources due for a poll, each moved on to its next poll by whoever claims it first."""
        claimed = []
        with self._write, self.engine.begin() as conn:
            due = conn.execute(select(import_sources).where(import_sources.c.next_at <= now)).mappings()
            for row in list(due):
                moved = conn.execute(
                    update(import_sources)
                    .where(import_sources.c.name == row["name"], import_sources.c.next_at == row["next_at"])
                    .values(next_at=now + row["every_s"])
                ).rowcount
                if moved:
                    claimed.append(SourceRecord(**{**row, "config": json.loads(row["config"])}))
        return claimed

    def save_poll(self, name: str, error: str | None, now: float) -> None:
        with self._write, self.engine.begin() as conn:
            conn.execute(
                update(import_sources).where(import_sources.c.name == name).values(polled_at=now, error=error)
            )

    def discover_machine(self, source: str, name: str, catalog: str, now: float) -> bool:
        """Inserts the machine as `discovered` if the store has no row for (source, name); True only for the
        one caller that inserted it, which then starts its import. Never two imports of one machine."""
        row = {
            "source": source,
            "name": name,
            "catalog": catalog,
            "state": "discovered",
            "workflow_id": None,
            "differences": "[]",
            "seen_at": now,
            "changed_at": now,
        }
        with self._write:
            try:
                with self.engine.begin() as conn:
                    key = (machines.c.source == source) & (machines.c.name == name)
                    if conn.execute(select(machines.c.name).where(key)).first() is not None:
                        return False
                    conn.execute(machines.insert(), [row])
            except IntegrityError:  # another engine inserted it between the look and the insert
                return False
        return True

    def reset_machine(self, source: str, name: str, catalog: str, now: float) -> bool:
        """A `removed` machine listed again: `discovered`, without a workflow, so the monitor imports it
        again. Only from `removed`, so two passes never reset (and import) it twice."""
        key = (machines.c.source == source) & (machines.c.name == name) & (machines.c.state == "removed")
        values = {
            "state": "discovered",
            "workflow_id": None,
            "catalog": catalog,
            "differences": "[]",
            "seen_at": now,
            "changed_at": now,
        }
        with self._write, self.engine.begin() as conn:
            return bool(conn.execute(update(machines).where(key).values(**values)).rowcount)

    def machines(self, source: str | None = None) -> list[MachineRecord]:
        query = select(machines).order_by(machines.c.name, machines.c.source)
        if source is not None:
            query = query.where(machines.c.source == source)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [MachineRecord(**{**row, "differences": json.loads(row["differences"])}) for row in rows]

    def set_machine(
        self,
        source: str,
        name: str,
        now: float,
        *,
        state: str | None = None,
        workflow_id: str | None = None,
        differences: list[str] | None = None,
        seen: bool = False,
        from_state: str | None = None,
    ) -> bool:
        """Moves a machine on; only the fields given change. False if the store has no such machine (or,
        with `from_state`, none in that state)."""
        if state is not None and state not in MACHINE_STATES:
            raise ValueError(f"machine state {state!r} is not one of {', '.join(MACHINE_STATES)}")
        values: dict[str, Any] = {"changed_at": now}
        if state is not None:
            values["state"] = state
        if workflow_id is not None:
            values["workflow_id"] = workflow_id
        if differences is not None:
            values["differences"] = json.dumps(differences)
        if seen:
            values["seen_at"] = now
        key = (machines.c.source == source) & (machines.c.name == name)
        if from_state is not None:
            key = key & (machines.c.state == from_state)
        with self._write, self.engine.begin() as conn:
            return bool(conn.execute(update(machines).where(key).values(**values)).rowcount)

    # -- catalogs ---------------------------------------------------------------------------------------

    def put_catalog(self, record: CatalogRecord) -> bool:
        """Stores the catalog; True if that changed it (new, or another document, reference or roles)."""
        row = asdict(record) | {"roles": json.dumps(sorted(record.roles))}
        with self._write, self.engine.begin() as conn:
            key = catalogs.c.name == record.name
            known = conn.execute(select(catalogs).where(key)).mappings().first()
            if known is not None:
                same = all(known[k] == row[k] for k in ("expected", "reference", "roles"))
                if same:
                    return False
                conn.execute(catalogs.delete().where(key))
            conn.execute(catalogs.insert(), [row])
        return True

    def catalog(self, name: str) -> CatalogRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(catalogs).where(catalogs.c.name == name)).mappings().first()
        return None if row is None else CatalogRecord(**{**row, "roles": json.loads(row["roles"])})

    def catalogs(self) -> list[CatalogRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(catalogs).order_by(catalogs.c.name)).mappings().all()
        return [CatalogRecord(**{**row, "roles": json.loads(row["roles"])}) for row in rows]

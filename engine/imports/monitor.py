"""The import monitor: polls each import source at its interval, and starts one import workflow for each
machine a source lists for the first time. One engine thread, like engine.scheduler.Scheduler.

Never two imports of one machine: the store inserts a machine only if (source, name) is absent, in one
transaction (common.store.imports), and only the pass that inserted it starts its import. A machine left
`discovered` (the engine stopped between the insert and the start) is started by the next pass; the start
is idempotent, since the engine returns the active workflow of a desired state submitted again.

A machine's state follows its import workflow (engine.imports.seen.followed): the step records `imported`
or `failed` with the differences itself, and each pass also reads the workflows of the machines still
importing or failed, so that a cancelled import reads `failed` and a retried one `importing` again.
Only the engine that holds the singleton duties polls (engine.duties).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.store.imports import ImportRows, MachineRecord, SourceRecord
from engine.imports import inventory
from engine.imports.inventory import Listed
from engine.imports.ldap import Secret, list_ldap
from engine.imports.seen import FOLLOWED, REMOVED, changes, followed

log = logging.getLogger("converge.engine.imports")

TICK_S = 1.0
# Starts the import workflow of a machine; returns its workflow id.
StartImport = Callable[[MachineRecord], str]
# Lists a source's machines; raises OSError or ValueError with what to fix when it cannot.
Lister = Callable[[SourceRecord], list[Listed]]
# A workflow's state by id (a WorkflowState value) and its failed step's error; None if the store has none.
WorkflowStateOf = Callable[[str], tuple[str, str | None] | None]


def list_inventory(source: SourceRecord) -> list[Listed]:
    listing = inventory.read_folder(Path(source.config["path"]))
    for problem in listing.problems:
        log.warning("import source %s: %s", source.name, problem)
    return listing.machines


class Monitor:
    """Polls the due import sources, one engine thread; `run` until `stop`."""

    def __init__(
        self,
        store: ImportRows,
        start_import: StartImport,
        secret: Secret,
        tick_s: float = TICK_S,
        *,
        workflow_state: WorkflowStateOf = lambda workflow_id: None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        """`secret`: a credential's value from the engine's vault, by name (an LDAP source's bind)."""
        self.store = store
        self.start_import = start_import
        self.tick_s = tick_s
        self.workflow_state = workflow_state
        self.leading = leading  # whether this engine holds the singleton duties now (engine.duties)
        self.listers: dict[str, Lister] = {
            "inventory": list_inventory,
            "ldap": lambda source: list_ldap(source, secret),
        }
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if not self.leading():
                continue
            try:
                self.run_once(time.time())
            except Exception as exc:  # the store is down: the next tick tries again
                first = str(exc).splitlines()[0] if str(exc) else ""
                log.warning(
                    "cannot poll the import sources (%s: %s); trying again", type(exc).__name__, first
                )

    def stop(self) -> None:
        self._stop.set()

    def run_once(self, now: float) -> None:
        store = self.store
        for source in store.claim_due_sources(now):
            self.poll(source, now)
        for machine in store.machines():
            if machine.state == "discovered" and machine.workflow_id is None:
                self._start(machine, now)
            elif machine.state in FOLLOWED and machine.workflow_id is not None:
                self._follow(machine, now)

    def poll(self, source: SourceRecord, now: float) -> None:
        store = self.store
        lister = self.listers.get(source.kind)
        try:
            if lister is None:
                raise ValueError(f"no lister for import sources of kind {source.kind!r} on this engine")
            listed = {m.name: m for m in lister(source)}
        except (OSError, ValueError) as exc:
            log.warning("import source %s: cannot list its machines: %s", source.name, exc)
            store.save_poll(source.name, str(exc), now)
            return
        known = {m.name: m.state for m in store.machines(source.name)}
        found = changes(set(listed), known)
        for name in found.new:
            if store.discover_machine(source.name, name, listed[name].catalog, now):
                log.warning("import source %s: machine %s discovered", source.name, name)
        for name in found.removed:
            store.set_machine(source.name, name, now, state=REMOVED)
            log.warning("import source %s: machine %s not listed any more: flagged", source.name, name)
        for name in found.back:
            # listed again: imported again, from `discovered` (the run_once pass below it starts it)
            store.reset_machine(source.name, name, listed[name].catalog, now)
        store.save_poll(source.name, None, now)

    def _start(self, machine: MachineRecord, now: float) -> None:
        try:
            workflow_id = self.start_import(machine)
        except Exception as exc:  # a bad catalog name, the engine's Redis down: tried again next pass
            log.warning("machine %s: cannot start its import: %s", machine.name, exc)
            return
        store = self.store
        store.set_machine(machine.source, machine.name, now, workflow_id=workflow_id)
        # `importing` only from `discovered`: a quick step may have recorded its outcome already
        store.set_machine(machine.source, machine.name, now, state="importing", from_state="discovered")
        log.warning("machine %s: import workflow %s started", machine.name, workflow_id)

    def _follow(self, machine: MachineRecord, now: float) -> None:
        assert machine.workflow_id is not None
        found = self.workflow_state(machine.workflow_id)
        if found is None:
            return  # pruned from history: the machine keeps what it last was
        moved = followed(machine.state, bool(machine.differences), *found)
        if moved is None:
            return
        state, differences = moved
        self.store.set_machine(machine.source, machine.name, now, state=state, differences=differences)
        log.warning("machine %s: %s (import workflow %s)", machine.name, state, machine.workflow_id)

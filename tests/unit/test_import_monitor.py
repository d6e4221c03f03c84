"""The import monitor over a real store and a real inventory folder: one import per machine, also across a
restarted engine; a machine gone from its source flagged, and imported again when it is back."""

from __future__ import annotations

from pathlib import Path

from common.store.imports import MachineRecord, SourceRecord
from common.store.sql import open_store
from engine.imports.monitor import Monitor


class Starts:
    """The monitor's start_import: numbers the imports it is asked for, as the engine numbers workflows."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(self, machine: MachineRecord) -> str:
        self.started.append(machine.name)
        return f"wf{len(self.started)}"


def _no_secret(name: str) -> str:
    raise AssertionError(f"an inventory source asked for credential {name!r}")


def _source(folder: Path) -> SourceRecord:
    return SourceRecord("inv", "inventory", {"path": str(folder)}, 60.0, "admin", 0.0, next_at=0.0)


def test_each_machine_is_imported_once_also_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "inv"
    folder.mkdir()
    (folder / "web1.yaml").write_text("name: web1\ncatalog: web\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    store.add_source(_source(folder))
    starts = Starts()
    Monitor(store, starts, _no_secret).run_once(1.0)
    Monitor(store, starts, _no_secret).run_once(2.0)  # not due: nothing new
    Monitor(open_store(url), starts, _no_secret).run_once(100.0)  # a restarted engine polls again
    assert starts.started == ["web1"]
    (machine,) = store.machines()
    assert (machine.state, machine.workflow_id, machine.catalog) == ("importing", "wf1", "web")


def test_a_machine_left_discovered_is_started_by_the_next_pass(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert store.discover_machine("inv", "db1", "db", 1.0)  # the engine stopped before starting it
    starts = Starts()
    Monitor(store, starts, _no_secret).run_once(2.0)
    Monitor(store, starts, _no_secret).run_once(3.0)
    assert starts.started == ["db1"]


def test_a_removed_machine_is_flagged_and_imported_again_when_back(tmp_path: Path) -> None:
    folder = tmp_path / "inv"
    folder.mkdir()
    listed = folder / "web1.json"
    listed.write_text('{"name": "web1", "catalog": "web"}')
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_source(_source(folder))
    starts = Starts()
    monitor = Monitor(store, starts, _no_secret)
    monitor.run_once(1.0)
    listed.unlink()
    monitor.run_once(70.0)
    assert [m.state for m in store.machines()] == ["removed"]
    monitor.run_once(140.0)  # still gone: flagged, not deleted, nothing started
    assert [m.state for m in store.machines()] == ["removed"]
    listed.write_text('{"name": "web1", "catalog": "web"}')
    monitor.run_once(210.0)
    assert starts.started == ["web1", "web1"]
    assert [(m.state, m.workflow_id) for m in store.machines()] == [("importing", "wf2")]


def test_a_source_that_cannot_be_read_says_why_and_starts_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_source(_source(tmp_path / "absent"))
    starts = Starts()
    Monitor(store, starts, _no_secret).run_once(1.0)
    assert starts.started == []
    (source,) = store.import_sources()
    assert source.error is not None and "does not exist" in source.error

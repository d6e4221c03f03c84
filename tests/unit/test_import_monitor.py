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


class Workflows:
    """The monitor's workflow_state: what the test says each workflow is now."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str | None]] = {}

    def __call__(self, workflow_id: str) -> tuple[str, str | None] | None:
        return self.states.get(workflow_id)


def test_a_machines_state_follows_its_import_workflow(tmp_path: Path) -> None:
    """The step records its own outcome; the monitor catches a cancel, a step that failed before it compared
    anything, and a retry, and never replaces the differences the step listed."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    for name in ("cancelled", "late", "differs"):
        assert store.discover_machine("inv", name, "web", 1.0)
    workflows = Workflows()
    monitor = Monitor(store, lambda m: f"wf-{m.name}", _no_secret, workflow_state=workflows)
    monitor.run_once(2.0)
    assert {m.state for m in store.machines()} == {"importing"}

    workflows.states |= {
        "wf-cancelled": ("cancelled", None),
        "wf-late": ("failed", "no agent of host late enrolled within 900s"),
        "wf-differs": ("failed", "machine differs"),
    }
    store.set_machine("inv", "differs", 3.0, state="failed", differences=["application a is 1, expected 2"])
    monitor.run_once(4.0)
    found = {m.name: (m.state, m.differences) for m in store.machines()}
    assert found["differs"] == ("failed", ["application a is 1, expected 2"])
    assert found["late"] == (
        "failed",
        ["no agent of host late enrolled within 900s; `converge workflows retry` it once that is fixed"],
    )
    assert found["cancelled"][0] == "failed"
    assert "the import workflow was cancelled" in found["cancelled"][1][0]

    workflows.states["wf-differs"] = ("running", None)  # `converge workflows retry`
    monitor.run_once(5.0)
    assert {m.name: (m.state, m.differences) for m in store.machines()}["differs"] == ("importing", [])
    workflows.states["wf-differs"] = ("succeeded", None)
    monitor.run_once(6.0)
    assert {m.name: m.state for m in store.machines()}["differs"] == "imported"


def test_a_quick_step_that_recorded_its_outcome_is_not_set_back_to_importing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert store.discover_machine("inv", "web1", "web", 1.0)

    def start(machine: MachineRecord) -> str:
        store.set_machine("inv", machine.name, 1.5, state="imported")  # the step ran before start returned
        return "wf1"

    Monitor(store, start, _no_secret).run_once(2.0)
    (machine,) = store.machines()
    assert (machine.state, machine.workflow_id) == ("imported", "wf1")


def test_an_engine_without_the_singleton_duties_polls_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "inv"
    folder.mkdir()
    (folder / "web1.yaml").write_text("name: web1\ncatalog: web\n")
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_source(_source(folder))
    starts = Starts()
    asked: list[bool] = []

    def follower() -> bool:
        """Not the duties' holder, for 20 ticks; then the monitor stops."""
        asked.append(False)
        if len(asked) == 20:
            monitor.stop()
        return False

    monitor = Monitor(store, starts, _no_secret, tick_s=0.001, leading=follower)
    monitor.run()
    assert len(asked) == 20
    assert (starts.started, store.machines(), store.import_sources()[0].polled_at) == ([], [], None)

"""The import monitor's pure parts and its store rows: what a poll changes, the inventory folder, and a
machine inserted only once per (source, name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.store.imports import SourceRecord
from common.store.sql import open_store
from engine.imports.inventory import Listed, read_folder
from engine.imports.seen import changes


def test_a_machine_seen_first_is_new_and_one_gone_is_removed() -> None:
    found = changes({"web1", "web2"}, {"web2": "imported", "db1": "importing"})
    assert found.new == ["web1"]
    assert found.removed == ["db1"]
    assert found.back == []


def test_a_removed_machine_is_flagged_once_and_is_back_when_listed_again() -> None:
    assert changes(set(), {"db1": "removed"}).removed == []
    found = changes({"db1"}, {"db1": "removed"})
    assert found.back == ["db1"]
    assert found.new == []


def test_the_inventory_folder_lists_each_file_and_reports_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "web1.yaml").write_text("name: web1\ncatalog: web\n")
    (tmp_path / "db1.json").write_text('{"name": "db1", "catalog": "db"}')
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "nocat.yml").write_text("name: x\n")
    (tmp_path / "twice.json").write_text('{"name": "web1", "catalog": "web"}')
    (tmp_path / "README.txt").write_text("not a machine")
    listing = read_folder(tmp_path)
    assert sorted(listing.machines, key=lambda m: m.name) == [Listed("db1", "db"), Listed("web1", "web")]
    assert len(listing.problems) == 3
    assert any("nocat.yml" in p and "`catalog` must be a non-empty string" in p for p in listing.problems)
    assert any("'web1' is listed by another file" in p for p in listing.problems)  # first by name wins


def test_a_missing_inventory_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_folder(tmp_path / "absent")


def test_a_machine_is_discovered_once_and_moves_on(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert store.discover_machine("ou", "web1", "web", now=10.0)
    assert not store.discover_machine("ou", "web1", "web", now=11.0)
    assert store.discover_machine("folder", "web1", "web", now=11.0)  # another source: another row
    assert store.set_machine(
        "ou", "web1", 12.0, state="failed", workflow_id="wf1", differences=["os: 12 != 11"]
    )
    again = open_store(f"sqlite:///{tmp_path / 'store.db'}")  # a restarted engine still knows it
    assert not again.discover_machine("ou", "web1", "web", now=13.0)
    (row,) = again.machines("ou")
    assert (row.state, row.workflow_id, row.differences) == ("failed", "wf1", ["os: 12 != 11"])
    with pytest.raises(ValueError, match="not one of"):
        again.set_machine("ou", "web1", 14.0, state="lost")


def test_a_source_is_claimed_once_per_interval(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    source = SourceRecord("folder", "inventory", {"path": "/srv/inv"}, 60.0, "admin", 0.0, next_at=0.0)
    assert not store.add_source(source)
    assert [s.name for s in store.claim_due_sources(5.0)] == ["folder"]
    assert store.claim_due_sources(6.0) == []
    assert [s.config for s in store.claim_due_sources(65.0)] == [{"path": "/srv/inv"}]
    store.save_poll("folder", "cannot read", 65.0)
    assert store.import_sources()[0].error == "cannot read"
    assert store.remove_source("folder") and store.import_sources() == []

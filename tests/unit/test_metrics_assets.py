"""The Grafana dashboard and the docs name only metrics the engine serves: a renamed metric fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fakeredis

from common.store.sql import open_store
from engine.metrics import registry

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bconverge_[a-z_]+\b")


def served(tmp_path: Path) -> set[str]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        made = registry(store, fakeredis.FakeRedis())
        names = set()
        for family in made.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
            if family.type == "histogram":  # its series, which an empty store has none of
                names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
        return names
    finally:
        store.close()


def test_the_dashboard_queries_served_metrics(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/converge-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert used <= served(tmp_path), used - served(tmp_path)


def test_the_docs_list_every_served_metric(tmp_path: Path) -> None:
    documented = set(NAME.findall((ROOT / "docs/metrics.md").read_text()))
    families = {n for n in served(tmp_path) if not n.endswith(("_bucket", "_count", "_sum", "_created"))}
    assert families <= documented, families - documented

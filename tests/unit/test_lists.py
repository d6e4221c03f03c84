"""The lists operators read: ids from a unique prefix, where finished workflows go, and a prune that asks
before it empties history. The engine's parts run on a real SQLite store; the CLI's against a stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from common.errors import BadInput, NotFound
from common.models import HistoryCount, StatusEvent, WorkflowState, WorkflowView
from common.settings import Settings
from common.store import SqlStore, open_store
from common.store.finished import like_prefix
from common.store.tables import workflows
from engine import cli
from engine.core import Engine
from engine.lookup import choose
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text

ONE_STEP = """
apiVersion: converge/v1
kind: DesiredState
metadata: {name: NAME}
resources:
  - {kind: directory, name: a, role: web, spec: {path: /tmp/NAME}}
"""


def test_the_whole_id_wins_over_the_longer_ids_it_starts() -> None:
    assert choose("abcd", ["abcd", "abcd1234"]) == "abcd"


def test_a_prefix_only_one_id_starts_with_names_that_id() -> None:
    assert choose("abcd", ["abcd1234ef"]) == "abcd1234ef"


def test_an_ambiguous_prefix_is_bad_input_listing_a_few_candidates() -> None:
    found = [f"abcd{i:04d}" for i in range(6)]
    with pytest.raises(BadInput) as raised:
        choose("abcd", found)
    message = str(raised.value)
    assert "abcd0000, abcd0001, abcd0002, abcd0003, abcd0004, ..." in message
    assert "abcd0005" not in message and "give more characters" in message


def test_a_prefix_too_short_or_matching_nothing_is_not_found() -> None:
    with pytest.raises(NotFound, match="at least 4 characters"):
        choose("abc", ["abc1234"])
    with pytest.raises(NotFound, match=r"no workflow abcd: .*history"):
        choose("abcd", [])


def test_like_wildcards_and_the_escape_are_escaped() -> None:
    assert like_prefix("ab") == "ab%"
    assert like_prefix("a%b_c\\") == "a\\%b\\_c\\\\%"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The engine's store-only operations on a real SQLite store; nothing here reaches Redis."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    none = cast(Any, None)
    settings = Settings(history_retention_days=30, failed_retention_days=7)
    yield Engine(settings, store, none, none, default_registry(), none)
    store.close()


def stored(store: SqlStore, workflow_id: str, *, state: str, days_ago: float) -> None:
    """A one-step workflow that reached `state` (succeeded or failed) `days_ago` days ago."""
    source = ONE_STEP.replace("NAME", workflow_id)
    store.create_workflow(plan(load_text(source, "x.yaml", default_registry()), workflow_id), source)
    events = [
        StatusEvent.model_validate(
            {"workflow_id": workflow_id, "step_id": f"{workflow_id}.0", "attempt": 1, "seq": seq,
             "state": st, "agent": "a", "at": "2024-01-01T00:00:00Z", "retryable": False}
        )
        for seq, st in ((1, "started"), (2, state))
    ]  # fmt: skip
    store.record(events)
    with store.engine.begin() as conn:
        when = time.time() - days_ago * 86400
        conn.execute(workflows.update().where(workflows.c.id == workflow_id).values(finished_at=when))


def test_the_engine_resolves_a_unique_prefix_and_refuses_an_ambiguous_one(engine: Engine) -> None:
    stored(engine.store, "cafe0001aaaa", state="succeeded", days_ago=0)
    stored(engine.store, "cafe0002bbbb", state="failed", days_ago=0)

    assert engine.store.workflow(engine.resolve("cafe0001")) is not None
    assert engine.resolve("cafe0002") == "cafe0002bbbb"
    with pytest.raises(BadInput, match="cafe0001aaaa, cafe0002bbbb"):
        engine.resolve("cafe")
    with pytest.raises(NotFound):
        engine.resolve("beef")


def test_state_succeeded_lists_history_and_no_state_the_rest(engine: Engine) -> None:
    stored(engine.store, "ok01", state="succeeded", days_ago=0)
    stored(engine.store, "bad1", state="failed", days_ago=0)

    assert [w.id for w in engine.workflows(WorkflowState.SUCCEEDED)] == ["ok01"]
    assert [w.id for w in engine.workflows(WorkflowState.FAILED)] == ["bad1"]
    assert [w.id for w in engine.workflows()] == ["bad1"]


def test_the_hourly_prune_expires_failed_workflows_on_their_own_retention(engine: Engine) -> None:
    stored(engine.store, "bad-old", state="failed", days_ago=8)
    stored(engine.store, "bad-new", state="failed", days_ago=6)
    stored(engine.store, "ok-old", state="succeeded", days_ago=8)

    assert engine.expire(time.time()) == (0, 1)
    assert engine.store.workflow("bad-old") is None
    assert engine.store.workflow("bad-new") is not None and engine.store.workflow("ok-old") is not None


def test_the_engine_refuses_to_empty_history_unless_told_everything(engine: Engine) -> None:
    stored(engine.store, "ok01", state="succeeded", days_ago=1)
    stored(engine.store, "ok02", state="succeeded", days_ago=40)

    assert engine.history_count(0) == HistoryCount(history=2, prunable=2)
    with pytest.raises(BadInput, match="all 2 workflows"):
        engine.prune(0)
    assert engine.prune() == 1, "the retention leaves one: no question"
    assert engine.prune(0, everything=True) == 1
    assert engine.history_count(0) == HistoryCount(history=0, prunable=0)


class StandIn:
    """What the CLI's commands call of the engine client, recorded."""

    def __init__(self, count: HistoryCount, views: list[WorkflowView] | None = None) -> None:
        self.count, self.views = count, views or []
        self.pruned: list[tuple[float | None, bool]] = []

    def workflows(self, state: str | None = None) -> list[WorkflowView]:
        return self.views

    def history_count(self, older_than_days: float | None = None) -> HistoryCount:
        return self.count

    def prune(self, older_than_days: float | None, *, everything: bool = False) -> int:
        self.pruned.append((older_than_days, everything))
        return self.count.prunable


def using(monkeypatch: pytest.MonkeyPatch, client: StandIn, *, tty: bool) -> None:
    monkeypatch.setattr(cli, "client_for", lambda url: client)
    monkeypatch.setattr(cli, "can_ask", lambda: tty)


def test_an_empty_list_says_where_the_succeeded_workflows_are(monkeypatch: pytest.MonkeyPatch) -> None:
    using(monkeypatch, StandIn(HistoryCount(history=3, prunable=0)), tty=False)

    text = CliRunner().invoke(cli.main, ["workflows", "list"])
    as_json = CliRunner().invoke(cli.main, ["workflows", "list", "--json"])

    assert text.exit_code == 0
    assert "no workflows" in text.stdout
    assert "succeeded workflows are in `converge workflows history` (3 there)" in text.stdout
    assert json.loads(as_json.stdout) == [], "--json stays a list of workflows"


def test_pruning_all_of_history_without_a_terminal_is_refused_and_deletes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = StandIn(HistoryCount(history=2, prunable=2))
    using(monkeypatch, client, tty=False)

    result = CliRunner().invoke(cli.main, ["workflows", "prune", "--older-than-days", "0"])

    assert result.exit_code == 2
    assert "pass --yes" in result.stderr
    assert client.pruned == []


def test_pruning_all_of_history_asks_and_a_no_deletes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    client = StandIn(HistoryCount(history=2, prunable=2))
    using(monkeypatch, client, tty=True)

    refused = CliRunner().invoke(cli.main, ["workflows", "prune", "--older-than-days", "0"], input="n\n")
    assert refused.exit_code == 1 and client.pruned == []
    assert "delete all 2 workflows from history? [y/N]" in refused.stderr

    agreed = CliRunner().invoke(
        cli.main, ["workflows", "prune", "--older-than-days", "0", "--json"], input="y\n"
    )
    assert agreed.exit_code == 0 and json.loads(agreed.stdout) == {"pruned": 2}
    assert client.pruned == [(0.0, True)]


def test_yes_prunes_all_without_asking_and_a_partial_prune_never_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = StandIn(HistoryCount(history=5, prunable=2))
    using(monkeypatch, client, tty=False)

    partial = CliRunner().invoke(cli.main, ["workflows", "prune"])
    everything = CliRunner().invoke(cli.main, ["workflows", "prune", "--older-than-days", "0", "--yes"])

    assert partial.exit_code == 0 and "pruned 2 workflows from history" in partial.stdout
    assert everything.exit_code == 0
    assert client.pruned == [(None, False), (0.0, True)]

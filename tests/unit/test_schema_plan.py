"""Which way a store is brought to head, from what it holds (common.store.schema_plan)."""

from __future__ import annotations

import pytest

from common.errors import BadInput
from common.settings import load_settings
from common.store.schema_plan import Action, Plan, plan


def test_an_empty_store_runs_every_migration() -> None:
    assert plan(revision=None, has_tables=False, head="0002") == Plan(Action.UPGRADE, None)


def test_a_store_with_tables_and_no_revision_is_bridged() -> None:
    assert plan(revision=None, has_tables=True, head="0002") == Plan(Action.BRIDGE, None)


def test_a_versioned_store_runs_the_migrations_after_its_revision() -> None:
    assert plan(revision="0001", has_tables=True, head="0002") == Plan(Action.UPGRADE, "0001")


def test_a_store_at_head_is_current() -> None:
    assert plan(revision="0002", has_tables=True, head="0002").action is Action.CURRENT


def test_pool_settings_default_and_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.store_pool_size, settings.store_max_overflow) == (5, 10)
    assert (settings.store_pool_timeout_s, settings.store_pool_recycle_s) == (30, 1800)
    monkeypatch.setenv("CONVERGE_STORE_POOL_SIZE", "20")
    monkeypatch.setenv("CONVERGE_MIGRATE_AT_START", "false")
    settings = load_settings()
    assert settings.store_pool_size == 20 and settings.migrate_at_start is False


@pytest.mark.parametrize(
    "variable", ["CONVERGE_STORE_POOL_SIZE", "CONVERGE_STORE_MAX_OVERFLOW", "CONVERGE_STORE_POOL_TIMEOUT_S"]
)
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_pool_setting_that_is_not_a_positive_integer_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(BadInput) as raised:
        load_settings()
    assert variable in str(raised.value)

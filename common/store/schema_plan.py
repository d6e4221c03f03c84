"""What bringing a store to the newest schema takes, decided from what the store holds (pure logic).

Three kinds of store:
- empty: every migration runs, from the first;
- versioned (an alembic_version row): the migrations after its revision run;
- unversioned, made by a release before versioned migrations (Converge tables, no alembic_version). Such a
  store may be at any older shape, and guessing its revision from its columns would be fragile. It is
  bridged instead: the additive upgrade those releases ran (common.store.upgrade: missing tables, nullable
  columns, indexes; nothing dropped or changed) brings it to today's tables, then it is stamped at head.
  From then on only migrations change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    CURRENT = "current"  # at head: nothing to do
    UPGRADE = "upgrade"  # run the migrations from `from_revision` (None: from the first) to head
    BRIDGE = "bridge"  # unversioned: the additive upgrade, then stamp head


@dataclass(frozen=True)
class Plan:
    action: Action
    from_revision: str | None


def plan(*, revision: str | None, has_tables: bool, head: str) -> Plan:
    """The plan for a store at `revision` (None: no alembic_version) that has Converge tables or not."""
    if revision is None:
        return Plan(Action.BRIDGE if has_tables else Action.UPGRADE, None)
    if revision == head:
        return Plan(Action.CURRENT, revision)
    return Plan(Action.UPGRADE, revision)

"""Bringing a store's schema to head with the alembic migrations in common/store/migrations.

The one path that creates or upgrades a store's schema: open_store runs it (unless told not to), and so
does `converge engine migrate`. See common.store.schema_plan for how each kind of store is handled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text

from common.store.schema_plan import Action, plan
from common.store.tables import metadata, workflows
from common.store.upgrade import upgrade as additive_upgrade

log = logging.getLogger("converge.store")
MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed 64-bit number: engines sharing one PostgreSQL take it in turn around an upgrade.
ADVISORY_LOCK = 0x436F6E7665726765  # "Converge"


@dataclass(frozen=True)
class Migration:
    from_revision: str | None
    to_revision: str
    applied: list[str] = field(default_factory=list)

    @property
    def current(self) -> bool:
        return not self.applied and self.from_revision == self.to_revision


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return revision_of(conn)


def _between(start: str | None, end: str) -> list[str]:
    """The revisions after `start` up to `end`, oldest first."""
    script = ScriptDirectory.from_config(config())
    revisions = [r.revision for r in script.walk_revisions(base="base", head=end)]
    revisions.reverse()
    return revisions[revisions.index(start) + 1 :] if start in revisions else revisions


def upgrade_to_head(engine: Engine) -> Migration:
    """Bring the store to head; returns from which revision to which and what was applied."""
    target = head()
    with engine.connect() as conn:
        postgres = engine.dialect.name == "postgresql"
        if postgres:  # SQLite serialises writers with its file lock
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
            conn.commit()
        try:
            # decided under the lock: another engine may have just upgraded it
            revision = revision_of(conn)
            conn.commit()
            step = plan(revision=revision, has_tables=inspect(conn).has_table(workflows.name), head=target)
            conn.commit()
            if step.action is Action.CURRENT:
                return Migration(revision, target)
            cfg = config(conn)
            if step.action is Action.BRIDGE:
                for added in additive_upgrade(engine):
                    log.info("unversioned store upgraded: %s added", added)
                command.stamp(cfg, target)
                conn.commit()
                log.info("unversioned store stamped at revision %s", target)
                return Migration(None, target, [f"bridge to {target}"])
            applied = _between(step.from_revision, target)
            command.upgrade(cfg, target)
            conn.commit()
            log.info("store migrated from %s to %s", step.from_revision or "an empty store", target)
            return Migration(step.from_revision, target, applied)
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
                conn.commit()


def upgrade_to(engine: Engine, revision: str) -> None:
    """Run the migrations up to `revision` only (tests make an older store with it)."""
    with engine.connect() as conn:
        command.upgrade(config(conn), revision)
        conn.commit()


def schema_diff(engine: Engine, target: MetaData = metadata) -> list[Any]:
    """How the store's schema differs from `target` (today's tables): empty when the migrations match."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), target))

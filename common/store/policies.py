"""The store's part of policies (common.policy): a row per role and key. A mixin of SqlStore; it loads and
saves only, what a policy may hold is checked by the engine before it is stored."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, select

from common.store.interface import PolicyRecord
from common.store.tables import policies


class PolicyRows:
    """The policies table, for a store that holds an SQLAlchemy engine and serialises its writes."""

    engine: Engine
    _write: threading.Lock

    def set_policy(self, role: str, values: Mapping[str, Any], set_by: str, now: float) -> None:
        with self._write, self.engine.begin() as conn:
            table = policies.c
            conn.execute(policies.delete().where(table.role == role, table.key.in_(list(values))))
            if values:
                rows = [
                    {"role": role, "key": k, "value": json.dumps(v), "set_by": set_by, "set_at": now}
                    for k, v in values.items()
                ]
                conn.execute(policies.insert(), rows)

    def policies(self, role: str | None = None) -> list[PolicyRecord]:
        query = select(policies).order_by(policies.c.role, policies.c.key)
        if role is not None:
            query = query.where(policies.c.role == role)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [PolicyRecord(**{**r, "value": json.loads(r["value"])}) for r in rows]

    def unset_policy(self, role: str, keys: list[str] | None = None) -> list[str]:
        with self._write, self.engine.begin() as conn:
            query = select(policies.c.key).where(policies.c.role == role)
            if keys:
                query = query.where(policies.c.key.in_(keys))
            removed = sorted(conn.execute(query).scalars())
            if removed:
                conn.execute(policies.delete().where(policies.c.role == role, policies.c.key.in_(removed)))
        return removed

"""The store's part of the vault: encrypted credentials, their audit, and the step a credential is asked for.

A mixin of SqlStore, apart so that the workflow store stays readable; it loads and saves only. What may be
handed out is decided in engine.vault_rules, and values are encrypted and decrypted in engine.vault: this
module sees ciphertext only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict

from sqlalchemy import Engine, select, update

from common.errors import NotFound
from common.store.interface import AuditEntry, CredentialRecord, StepHolder
from common.store.tables import credential_audit, credentials, steps

_RECORD_COLUMNS = [credentials.c.name, credentials.c.created_at, credentials.c.updated_at]
_HOLDER_COLUMNS = [steps.c[name] for name in StepHolder._fields]
_AUDIT_COLUMNS = [credential_audit.c[name] for name in AuditEntry.__dataclass_fields__]


class CredentialRows:
    """The vault's tables, for a store that holds an SQLAlchemy engine and serialises its writes."""

    engine: Engine
    _write: threading.Lock

    def put_credential(self, name: str, ciphertext: str, now: float) -> bool:
        with self._write, self.engine.begin() as conn:
            changed = conn.execute(
                update(credentials)
                .where(credentials.c.name == name)
                .values(ciphertext=ciphertext, updated_at=now)
            ).rowcount
            if changed:
                return False
            conn.execute(
                credentials.insert().values(name=name, ciphertext=ciphertext, created_at=now, updated_at=now)
            )
        return True

    def credential_ciphertext(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(credentials.c.ciphertext).where(credentials.c.name == name)).first()
        return None if found is None else str(found[0])

    def credential_records(self) -> list[CredentialRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_RECORD_COLUMNS).order_by(credentials.c.name)).mappings().all()
        return [CredentialRecord(**r) for r in rows]

    def delete_credential(self, name: str) -> None:
        with self._write, self.engine.begin() as conn:
            if conn.execute(credentials.delete().where(credentials.c.name == name)).rowcount == 0:
                raise NotFound(f"no credential named {name!r}: `converge credentials list` shows them")

    def step_holder(self, step_id: str) -> StepHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_HOLDER_COLUMNS).where(steps.c.id == step_id)).mappings().first()
        if row is None:
            return None
        return StepHolder(
            **{**row, "epoch": row["epoch"] or 0, "credentials": json.loads(row["credentials"])}
        )

    def audit(self, entry: AuditEntry) -> None:
        with self._write, self.engine.begin() as conn:
            conn.execute(credential_audit.insert().values(**asdict(entry)))

    def audit_entries(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = select(*_AUDIT_COLUMNS).order_by(credential_audit.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(credential_audit.c.name == name)
        with self.engine.connect() as conn:
            return [AuditEntry(**r) for r in conn.execute(query).mappings()]

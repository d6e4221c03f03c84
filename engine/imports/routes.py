"""The operators' routes of imports: the sources (`converge sources`), the machines they listed
(`converge machines list`) and the catalogs (`converge catalogs`). A source decides which agents the engine
admits, so changing one needs an admin token (engine.auth); reading needs a viewer's."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request

from common.errors import BadInput, NotFound
from common.store.imports import CatalogRecord, MachineRecord
from common.store.interface import TokenRecord
from engine.core import Engine
from engine.imports.agent_routes import rows_of
from engine.imports.sources import SourceBody, source_record, view

log = logging.getLogger("converge.engine.imports")

SOURCES_ROUTE = "/v1/sources"


def machine_view(record: MachineRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "source": record.source,
        "catalog": record.catalog,
        "state": record.state,
        "differences": record.differences,
        "workflow_id": record.workflow_id,
        "seen_at": record.seen_at,
        "changed_at": record.changed_at,
    }


def catalog_view(record: CatalogRecord, members: list[MachineRecord]) -> dict[str, Any]:
    return {
        "name": record.name,
        "expected": record.expected,
        "reference": record.reference,
        "roles": record.roles,
        "set_at": record.set_at,
        "machines": [m.name for m in members if m.catalog == record.name and m.state == "imported"],
    }


def install_routes(api: FastAPI, engine: Engine) -> None:
    store = rows_of(engine)

    @api.put(SOURCES_ROUTE + "/{name}")
    def add_source(name: str, body: SourceBody, request: Request) -> dict[str, Any]:
        caller: TokenRecord = request.state.caller
        record = source_record(name, body, caller.name, time.time())
        credential = record.config.get("bind_credential")
        if credential and engine.store.credential_ciphertext(credential) is None:
            raise BadInput(
                f"no credential {credential!r} in the vault: store the bind password first "
                f"(`converge credentials set {credential}`)"
            )
        replaced = store.add_source(record)
        log.warning(
            "import source %s (%s) %s by %s",
            name,
            record.kind,
            "replaced" if replaced else "added",
            caller.name,
        )
        return {"source": view(record), "replaced": replaced}

    @api.get(SOURCES_ROUTE)
    def sources() -> dict[str, Any]:
        return {"sources": [view(r) for r in store.import_sources()]}

    @api.delete(SOURCES_ROUTE + "/{name}")
    def remove_source(name: str, request: Request) -> dict[str, str]:
        if not store.remove_source(name):
            known = ", ".join(r.name for r in store.import_sources()) or "none"
            raise NotFound(f"no import source named {name!r} (known: {known})")
        log.warning("import source %s removed by %s", name, request.state.caller.name)
        return {"removed": name}

    @api.get("/v1/machines")
    def machines() -> dict[str, Any]:
        return {"machines": [machine_view(m) for m in store.machines()]}

    @api.get("/v1/catalogs")
    def catalogs() -> dict[str, Any]:
        members = store.machines()
        return {"catalogs": [catalog_view(c, members) for c in store.catalogs()]}

    @api.get("/v1/catalogs/{name}")
    def catalog(name: str) -> dict[str, Any]:
        record = store.catalog(name)
        if record is None:
            known = ", ".join(c.name for c in store.catalogs()) or "none"
            raise NotFound(
                f"no catalog named {name!r} (known: {known}); a catalog is a `catalog` resource of a desired "
                "state: `converge apply` it"
            )
        return {"catalog": catalog_view(record, store.machines())}

"""The routes of the engine's own agent (`/v1/agent/engine/...`): what its `catalog` and `machine_import`
steps ask of the engine (workflows.kinds.imports).

Like every agent route they take an agent's own token (engine.auth); these also want the calling agent to be
admitted with role `engine`, which only the engine's own agent is unless an admin admitted another.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from common.store.imports import MACHINE_STATES, CatalogRecord, ImportRows
from common.store.interface import EnrollmentRecord, Store, TokenRecord
from engine import admission
from engine.core import Engine

ROUTES = "/v1/agent/engine"


class CatalogBody(BaseModel):
    expected: str | None = Field(default=None, max_length=admission.MAX_CAPABILITIES_BYTES)
    reference: str | None = Field(default=None, max_length=255)
    roles: list[str] = Field(min_length=1, max_length=32)


class MachineBody(BaseModel):
    state: str
    differences: list[str] = Field(default_factory=list, max_length=1000)


def host_of(record: EnrollmentRecord) -> str:
    return str(record.capabilities.get("hostname") or "")


def same_host(a: str, b: str) -> bool:
    """Host names compare without case, and a short name matches its FQDN (`web1` and `web1.example.org`)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.split(".", 1)[0] == b or b.split(".", 1)[0] == a


def agent_json(record: EnrollmentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": record.state,
        "roles": record.roles,
        "host": host_of(record),
        "document": record.capabilities.get("document"),
    }


def catalog_json(record: CatalogRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "expected": record.expected,
        "reference": record.reference,
        "roles": record.roles,
    }


def rows_of(engine: Engine) -> ImportRows:
    """The store's import tables (SqlStore has them; the Store protocol names only the workflow part)."""
    store = engine.store
    assert isinstance(store, ImportRows), "the store keeps no import sources"
    return store


def engine_agent(store: Store, request: Request) -> str:
    """The calling agent's id; 403 unless it is admitted with role `engine`."""
    caller: TokenRecord = request.state.caller
    record = store.enrollment(caller.name)
    if record is None or record.state != "admitted" or admission.LOCAL_ROLE not in record.roles:
        raise HTTPException(403, f"agent {caller.name} is not the engine's own agent (role engine)")
    return caller.name


def install_routes(api: FastAPI, engine: Engine) -> None:
    """The catalog and host routes here; the machine routes in _machine_routes."""
    store = rows_of(engine)
    _machine_routes(api, engine)

    @api.get(ROUTES + "/catalogs/{name}")
    def catalog(name: str, request: Request) -> dict[str, Any] | None:
        engine_agent(engine.store, request)
        record = store.catalog(name)
        return None if record is None else catalog_json(record)

    @api.put(ROUTES + "/catalogs/{name}")
    def put_catalog(name: str, body: CatalogBody, request: Request) -> dict[str, Any]:
        engine_agent(engine.store, request)
        if (body.expected is None) == (body.reference is None):
            raise HTTPException(422, "a catalog has exactly one of `expected` or `reference`")
        record = CatalogRecord(name, body.expected, body.reference, sorted(set(body.roles)), time.time())
        return {"name": name, "changed": store.put_catalog(record)}

    @api.get(ROUTES + "/hosts/{host}")
    def host(host: str, request: Request) -> dict[str, Any]:
        """The agents that claim `host`, in any admission state."""
        engine_agent(engine.store, request)
        found = [agent_json(e) for e in engine.store.enrollments() if same_host(host_of(e), host)]
        return {"host": host, "agents": found}

    @api.post(ROUTES + "/agents/{agent_id}/admit")
    def admit(agent_id: str, request: Request) -> dict[str, str]:
        by = engine_agent(engine.store, request)
        record = engine.store.enrollment(agent_id)
        if record is None or record.state not in ("pending", "admitted"):
            state = "not enrolled" if record is None else record.state
            raise HTTPException(409, f"agent {agent_id} is {state}: an import admits only a pending agent")
        state = admission.decide(engine, agent_id, "admit")
        admission.log.warning("agent %s admitted by its machine's import (engine agent %s)", agent_id, by)
        return {"agent": agent_id, "admission": state}


def _machine_routes(api: FastAPI, engine: Engine) -> None:
    store = rows_of(engine)

    @api.get(ROUTES + "/machines/{source}/{name}")
    def machine(source: str, name: str, request: Request) -> dict[str, Any] | None:
        engine_agent(engine.store, request)
        found = [m for m in store.machines(source) if m.name == name]
        if not found:
            return None
        return {"state": found[0].state, "differences": found[0].differences}

    @api.put(ROUTES + "/machines/{source}/{name}")
    def set_machine(source: str, name: str, body: MachineBody, request: Request) -> dict[str, Any]:
        engine_agent(engine.store, request)
        if body.state not in ("imported", "failed"):
            raise HTTPException(422, f"an import sets a machine imported or failed, not {body.state!r}")
        assert body.state in MACHINE_STATES
        if not store.set_machine(source, name, time.time(), state=body.state, differences=body.differences):
            raise HTTPException(404, f"no machine {name} of source {source}")
        return {"source": source, "name": name, "state": body.state}

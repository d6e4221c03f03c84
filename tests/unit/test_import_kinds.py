"""The engine-local agent's kinds as logic, against an engine of the test's own (the real routes are proved
in tests/integration/test_import_flow.py): what a machine_import asks, records and refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from common.models import Change
from workflows.context import NullContext
from workflows.kinds.imports import MachineImportProvider, MachineImportSpec
from workflows.registry import StepError

DOC = {"os": {"ID": "debian"}, "applications": {"nginx": "1.22"}, "updates": [], "associations": {}}


class Engine:
    def __init__(self, agents: list[dict[str, Any]], catalog: dict[str, Any] | None) -> None:
        self.agents = agents
        self.catalog = catalog
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        self.calls.append((method, path, body))
        if path.startswith("/v1/agent/engine/hosts/"):
            return {"agents": self.agents}
        if path.startswith("/v1/agent/engine/catalogs/"):
            return self.catalog
        return {}


def run(engine: Engine, wait_s: float = 0.1) -> None:
    spec = MachineImportSpec(machine="web1", source="ou", catalog="web", wait_s=wait_s)
    MachineImportProvider().apply(spec, Change(action="create"), NullContext(engine=engine))


def pending(document: dict[str, Any] | None = DOC, roles: list[str] | None = None) -> dict[str, Any]:
    return {"id": "web1-web", "state": "pending", "roles": roles or ["web"], "document": document}


CATALOG = {"name": "web", "expected": json.dumps(DOC), "reference": None, "roles": ["web"]}


def test_an_agent_with_the_catalogs_document_is_admitted_and_its_machine_recorded_imported() -> None:
    engine = Engine([pending()], CATALOG)
    run(engine)
    writes = [(m, p, b) for m, p, b in engine.calls if m != "GET"]
    assert writes == [
        ("POST", "/v1/agent/engine/agents/web1-web/admit", {"catalog": "web"}),
        ("PUT", "/v1/agent/engine/machines/ou/web1", {"state": "imported", "differences": []}),
    ]


def test_a_difference_fails_the_step_with_it_and_records_it_and_admits_nobody() -> None:
    other = json.loads(json.dumps(DOC)) | {"applications": {"nginx": "1.24"}}
    engine = Engine([pending(other, roles=["db"])], CATALOG)
    with pytest.raises(StepError, match=re.escape("application nginx is 1.24, expected 1.22")) as raised:
        run(engine)
    assert not raised.value.retryable
    writes = [(m, p, b) for m, p, b in engine.calls if m != "GET"]
    assert writes == [
        (
            "PUT",
            "/v1/agent/engine/machines/ou/web1",
            {
                "state": "failed",
                "differences": [
                    "application nginx is 1.24, expected 1.22",
                    "roles are db, expected web: start the agent with the catalog's roles",
                ],
            },
        )
    ]


def test_two_agents_claiming_one_host_are_refused_by_name() -> None:
    engine = Engine([pending(), pending() | {"id": "impostor"}], CATALOG)
    with pytest.raises(StepError, match="2 agents claim host web1 \\(web1-web, impostor\\)"):
        run(engine)


def test_no_agent_within_the_wait_fails_saying_what_to_start() -> None:
    with pytest.raises(StepError, match=re.escape("no agent of host web1 enrolled within 0.1s")):
        run(Engine([], CATALOG))


def test_a_missing_catalog_names_the_resource_to_apply() -> None:
    with pytest.raises(StepError, match="apply a desired state with a `catalog` resource named web"):
        run(Engine([pending()], None))


def test_an_extension_validator_replaces_the_strict_test() -> None:
    other = json.loads(json.dumps(DOC)) | {"updates": ["debian-12.6"]}
    engine = Engine([pending(other)], CATALOG)
    spec = MachineImportSpec(machine="web1", source="ou", catalog="web", wait_s=0.1)
    relaxed = {"capability_test": lambda expected, actual: []}
    ctx = NullContext(engine=engine, validators=relaxed)
    MachineImportProvider().apply(spec, Change(action="create"), ctx)
    assert (
        "PUT",
        "/v1/agent/engine/machines/ou/web1",
        {"state": "imported", "differences": []},
    ) in engine.calls

"""The engine-local agent's kinds (role `engine`): `catalog`, which stores a catalog on the engine, and
`machine_import`, the step of a machine's import workflow (engine.imports.start).

Both act on the engine through its routes for its own agent (StepContext.engine_call); the engine refuses
them to any other agent. `machine_import`:
1. waits, with progress, for the pending agent that claims the machine's host name;
2. runs the capability test (an extension may replace it) on the catalog's document and the agent's;
3. admits the agent if they agree, else fails with the differences, which `converge machines list` shows.
Run again after the machine is fixed (`converge workflows retry`), it does only what is still needed: an
agent admitted already is not admitted twice.
"""

from __future__ import annotations

import json
import time
from typing import Any, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.models import Change
from workflows.capabilities import CAPABILITY_TEST, CapabilityError, parse, to_json
from workflows.context import StepContext
from workflows.registry import Provider, StepError

ENGINE_ROLE = "engine"
ROUTES = "/v1/agent/engine"
POLL_S = 1.0
"""How often the import step asks the engine for the machine's pending agent."""


def _q(value: str) -> str:
    return quote(value, safe="")


class CatalogSpec(BaseModel):
    """A catalog: the capability document its machines must have (`expected`), or the machine whose
    document is the master image (`reference`), and the roles their agents are admitted with."""

    model_config = ConfigDict(extra="forbid")

    expected: str | dict[str, Any] | None = Field(
        default=None, description="A capability document: XML or JSON text, or the JSON document inline."
    )
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The host name of an imported machine whose agent's document is the master image.",
    )
    roles: list[str] = Field(min_length=1, description="The roles its machines' agents are admitted with.")

    @field_validator("expected")
    @classmethod
    def _readable(cls, value: str | dict[str, Any] | None) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            parse(text, "the expected capability document")
        except CapabilityError as exc:
            raise ValueError(str(exc)) from None
        return text

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.expected is None) == (self.reference is None):
            raise ValueError(
                "give exactly one of `expected` (a capability document) or `reference` (a machine's host "
                "name)"
            )
        return self


def catalog_name(ctx: StepContext) -> str:
    return ctx.resource.partition("/")[2]


class CatalogProvider(Provider[CatalogSpec]):
    """Stores the catalog on the engine; unchanged when the engine holds the same one."""

    kind = "catalog"
    spec_model = CatalogSpec
    default_role = ENGINE_ROLE

    def identity(self, spec: CatalogSpec) -> str | None:
        return None  # named by the resource, which the loader already keeps unique

    def _wanted(self, spec: CatalogSpec) -> dict[str, Any]:
        return {"expected": spec.expected, "reference": spec.reference, "roles": sorted(set(spec.roles))}

    def check(self, spec: CatalogSpec, ctx: StepContext) -> Change:
        name = catalog_name(ctx)
        known = ctx.engine_call("GET", f"{ROUTES}/catalogs/{_q(name)}")
        wanted = self._wanted(spec)
        if known is None:
            return Change(action="create", diff=f"catalog {name} of roles {', '.join(wanted['roles'])}")
        held = {k: known.get(k) for k in wanted}
        if held == wanted:
            return Change(action="none")
        changed = [k for k in wanted if held[k] != wanted[k]]
        return Change(action="update", diff=f"catalog {name}: {', '.join(changed)} changed")

    def apply(self, spec: CatalogSpec, change: Change, ctx: StepContext) -> None:
        ctx.engine_call("PUT", f"{ROUTES}/catalogs/{_q(catalog_name(ctx))}", self._wanted(spec))


class MachineImportSpec(BaseModel):
    """One machine's import, as the import monitor starts it."""

    model_config = ConfigDict(extra="forbid")

    machine: str = Field(min_length=1, max_length=255, description="The host name its agent reports.")
    source: str = Field(min_length=1, max_length=255, description="The import source that listed it.")
    catalog: str = Field(min_length=1, max_length=255, description="The catalog it is validated against.")
    wait_s: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="How long to wait for its agent to enroll."
    )


class MachineImportProvider(Provider[MachineImportSpec]):
    kind = "machine_import"
    spec_model = MachineImportSpec
    default_role = ENGINE_ROLE
    create_words = ("import", "imported")

    def identity(self, spec: MachineImportSpec) -> str | None:
        return f"machine:{spec.source}/{spec.machine}"

    def check(self, spec: MachineImportSpec, ctx: StepContext) -> Change:
        agents = _agents_of(spec.machine, ctx)
        if any(a["state"] == "admitted" for a in agents) and _machine_state(spec, ctx) == "imported":
            return Change(action="none", diff=f"{spec.machine} is imported")
        return Change(action="create", diff=f"import {spec.machine} into catalog {spec.catalog}")

    def apply(self, spec: MachineImportSpec, change: Change, ctx: StepContext) -> None:
        agent = _wait_for_agent(spec, ctx)
        catalog = ctx.engine_call("GET", f"{ROUTES}/catalogs/{_q(spec.catalog)}")
        if catalog is None:
            raise StepError(
                f"no catalog {spec.catalog!r} on the engine: apply a desired state with a `catalog` resource "
                f"named {spec.catalog}, then `converge workflows retry` this import",
                retryable=False,
            )
        found = _differences(spec, catalog, agent, ctx)
        if found:
            _record(spec, ctx, "failed", found)
            listed = "; ".join(found)
            raise StepError(
                f"machine {spec.machine} (agent {agent['id']}) differs from catalog {spec.catalog} in "
                f"{len(found)} way(s): {listed}. Fix the machine, then `converge workflows retry` this "
                "import",
                retryable=False,
            )
        if agent["state"] != "admitted":
            ctx.engine_call("POST", f"{ROUTES}/agents/{_q(agent['id'])}/admit", {"catalog": spec.catalog})
        _record(spec, ctx, "imported", [])
        ctx.progress(100.0, f"agent {agent['id']} of {spec.machine} admitted into catalog {spec.catalog}")


def _agents_of(machine: str, ctx: StepContext) -> list[dict[str, Any]]:
    answer = ctx.engine_call("GET", f"{ROUTES}/hosts/{_q(machine)}")
    agents: list[dict[str, Any]] = answer["agents"]
    return agents


def _machine_state(spec: MachineImportSpec, ctx: StepContext) -> str | None:
    answer = ctx.engine_call("GET", f"{ROUTES}/machines/{_q(spec.source)}/{_q(spec.machine)}")
    return None if answer is None else str(answer["state"])


def _record(spec: MachineImportSpec, ctx: StepContext, state: str, differences: list[str]) -> None:
    path = f"{ROUTES}/machines/{_q(spec.source)}/{_q(spec.machine)}"
    ctx.engine_call("PUT", path, {"state": state, "differences": differences})


def _wait_for_agent(spec: MachineImportSpec, ctx: StepContext) -> dict[str, Any]:
    """The one agent (pending, or admitted by an earlier run) that claims the machine's host name."""
    start = time.monotonic()
    while True:
        agents = [a for a in _agents_of(spec.machine, ctx) if a["state"] in ("pending", "admitted")]
        if len(agents) == 1:
            return agents[0]
        if len(agents) > 1:
            ids = ", ".join(a["id"] for a in agents)
            raise StepError(
                f"{len(agents)} agents claim host {spec.machine} ({ids}): deny those that are not it "
                "(`converge agents deny ID`), then `converge workflows retry` this import",
                retryable=False,
            )
        waited = time.monotonic() - start
        if waited >= spec.wait_s:
            raise StepError(
                f"no agent of host {spec.machine} enrolled within {spec.wait_s:g}s: start its agent with the "
                "engine's address, then `converge workflows retry` this import",
                retryable=False,
            )
        ctx.progress(
            None, f"waiting for the agent of {spec.machine} to enroll ({waited:.0f}s of {spec.wait_s:g}s)"
        )
        time.sleep(min(POLL_S, spec.wait_s - waited))


def _expected_document(spec: MachineImportSpec, catalog: dict[str, Any], ctx: StepContext) -> str:
    if catalog.get("expected"):
        return str(catalog["expected"])
    reference = str(catalog["reference"])
    admitted = [a for a in _agents_of(reference, ctx) if a["state"] == "admitted" and a.get("document")]
    if not admitted:
        raise StepError(
            f"catalog {spec.catalog}'s reference machine {reference} has no admitted agent with a capability "
            f"document: import {reference} first, then `converge workflows retry` this import",
            retryable=False,
        )
    return json.dumps(admitted[0]["document"])


def _differences(
    spec: MachineImportSpec, catalog: dict[str, Any], agent: dict[str, Any], ctx: StepContext
) -> list[str]:
    """The capability test's differences as an operator reads them, and any role the agent lacks."""
    document = agent.get("document")
    if not document:
        return [f"agent {agent['id']} sent no capability document: upgrade it, or set its capabilities_file"]
    try:
        actual = to_json(parse(json.dumps(document), "the agent's capability document"))
    except CapabilityError as exc:
        return [str(exc)]
    expected = _expected_document(spec, catalog, ctx)
    try:
        found = [str(d) for d in ctx.validator(CAPABILITY_TEST)(expected, actual)]
    except CapabilityError as exc:
        raise StepError(f"catalog {spec.catalog}: {exc}", retryable=False) from None
    except StepError:
        raise
    except Exception as exc:  # an extension's capability test with a bug: its words, not a traceback
        raise StepError(
            f"the capability test failed: {type(exc).__name__}: {exc}: see `converge-agent extensions` on "
            "the engine's agent",
            retryable=False,
        ) from None
    wanted, held = set(catalog["roles"]), set(agent["roles"])
    if wanted != held:
        found.append(
            f"roles are {', '.join(sorted(held))}, expected {', '.join(sorted(wanted))}: start the agent "
            "with the catalog's roles"
        )
    return found

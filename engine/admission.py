"""Admission of agents, like Salt's key acceptance: an agent enrolls, the operator decides, and only an
admitted agent gets credentials.

An agent enrolls (an open route: it has nothing yet) with its id, roles, an Ed25519 public key and a
capability document, and is `pending`: no Redis user, no token, so no step and no credential. It asks for its
status proving it holds the key (it signs `id|time`). Once the operator admits it, that answer carries its
credentials, made there and then: its own Redis user (engine.acl) and an API token (role `agent`, named after
it). The engine keeps neither (the store has the token's hash only); asked again, it makes new ones. Revoking
deletes both at once and fails the agent's running steps as lost, so that they run again on another agent.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from fastapi import FastAPI
from starlette.exceptions import HTTPException

from common import names, signing
from common.errors import BadInput, NotFound, Refused
from common.models import (
    ENGINE_SEQ,
    Admission,
    AdmissionState,
    EnrollRequest,
    StatusEvent,
    StatusRequest,
    StepState,
)
from common.store.interface import EnrollmentRecord, Store
from engine import acl, acl_mirror, auth
from engine.core import Engine

log = logging.getLogger("converge.engine.admission")

Action = Literal["admit", "deny", "revoke"]
# The role of the engine's own agent, which runs the import workflows and stores catalogs.
LOCAL_ROLE = "engine"
# A status request signed longer ago (or ahead) than this is refused: a captured one soon goes stale.
CLOCK_SKEW_S = 60.0
# Enrolling needs no token: past this many pending agents, new ones are refused until the operator decides.
MAX_PENDING = 1000
# Room for a capability document of a host with a few thousand packages.
MAX_CAPABILITIES_BYTES = 256 * 1024

# What each decision leads to, from which states it may be taken (again too: it is idempotent), and what to
# do instead from the others.
_DECISIONS: dict[Action, tuple[AdmissionState, set[AdmissionState], str]] = {
    "admit": ("admitted", {"pending", "denied", "revoked", "admitted"}, ""),
    "deny": ("denied", {"pending", "denied", "revoked"}, "revoke it, which deletes its credentials"),
    "revoke": ("revoked", {"admitted", "revoked"}, "it has no credentials to revoke: deny it"),
}


def next_state(agent_id: str, current: AdmissionState, action: Action) -> AdmissionState:
    """The state `action` leads to from `current`; Refused, saying what to do instead, when it cannot."""
    state, allowed, instead = _DECISIONS[action]
    if current not in allowed:
        raise Refused(f"agent {agent_id} is {current}, it cannot be {state}: {instead}")
    return state


def proof_problem(record: EnrollmentRecord, request: StatusRequest, now: float) -> str | None:
    """None if the request is signed by the agent's enrolled key, recently; else what is wrong."""
    if abs(now - request.at_ms / 1000) > CLOCK_SKEW_S:
        return (
            f"the request was signed at a time more than {CLOCK_SKEW_S:g}s from the engine's clock: set the "
            "clocks of the agent's host and the engine's right (NTP)"
        )
    try:
        signature = base64.b64decode(request.signature, validate=True)
        signing.load_public(record.public_key).verify(signature, request.proof(record.id, request.at_ms))
    except (InvalidSignature, binascii.Error, ValueError):
        return f"the signature does not verify against the key agent {record.id} enrolled with"
    return None


def check_request(request: EnrollRequest) -> None:
    """BadInput unless the id, roles, key and capabilities can be stored as they are."""
    for name in [request.id, *request.roles]:
        if not names.valid_name(name):
            raise BadInput(f"invalid id or role {name!r}: use letters, digits, '.', '_' and '-'")
    try:
        signing.load_public(request.public_key)
    except ValueError as exc:
        raise BadInput(f"the public key cannot be used ({exc}): send an Ed25519 public key (PEM)") from None
    if len(json.dumps(request.capabilities)) > MAX_CAPABILITIES_BYTES:
        raise BadInput(f"the capability document is larger than {MAX_CAPABILITIES_BYTES} bytes")


def enroll(store: Store, request: EnrollRequest, now: float, own_key: str | None = None) -> Admission:
    """Record a new agent as pending, or answer an agent that enrolls again with the same key. The engine's
    own agent (role `engine` alone, with `own_key`, which the engine made: engine.local_agent) is admitted
    at once."""
    check_request(request)
    known = store.enrollment(request.id)
    if known is None and sum(e.state == "pending" for e in store.enrollments()) >= MAX_PENDING:
        raise HTTPException(429, f"{MAX_PENDING} agents already wait for admission: try again later")
    record = EnrollmentRecord(
        id=request.id,
        roles=sorted(set(request.roles)),
        public_key=request.public_key,
        capabilities=request.capabilities,
        state="pending",
        created_at=now,
        updated_at=now,
        last_seen_at=now,
    )
    stored = store.enroll(record)
    own = own_key is not None and request.public_key.strip() == own_key.strip()
    if own and record.roles == [LOCAL_ROLE] and stored.state == "pending":
        store.set_enrollment_state(record.id, "admitted", now)
        log.info("the engine's own agent %s is admitted", record.id)
        stored = store.enrollment(record.id) or stored
    elif stored is record:  # new (the store returns the known enrollment otherwise)
        log.warning(
            "agent %s (roles %s) enrolled and waits: `converge agents admit %s` or `... deny %s`",
            record.id,
            ", ".join(record.roles),
            record.id,
            record.id,
        )
    return Admission(state=stored.state, message=_message(stored))


def status(engine: Engine, request: StatusRequest, now: float) -> Admission:
    """The agent's state, to the holder of its key; once admitted, with new credentials."""
    record = engine.store.enrollment(request.id)
    if record is None:
        raise NotFound(f"agent {request.id} has not enrolled: enroll first (POST /v1/enroll)")
    problem = proof_problem(record, request, now)
    if problem is not None:
        log.warning("refused a status request for agent %s: %s", request.id, problem)
        raise HTTPException(401, problem)
    engine.store.saw_enrollment(record.id, now)
    if record.state != "admitted":
        return Admission(state=record.state, message=_message(record))
    return _issue(engine, record)


def _issue(engine: Engine, record: EnrollmentRecord) -> Admission:
    """New credentials for an admitted agent: a Redis user of its roles, an API token; the old ones go."""
    password = acl.grant(engine.client, record.id, record.roles)
    acl_mirror.mirror_now(engine.settings.broker_url)  # behind Sentinel: on the replicas too
    _drop_token(engine.store, record.id)
    token = auth.create(engine.store, record.id, auth.Role.AGENT)
    broker_url = engine.settings.agents_broker_url or engine.settings.broker_url
    signer = engine.dispatcher.signer
    log.info("issued credentials to agent %s", record.id)
    return Admission(
        state="admitted",
        message=_message(record),
        broker_url=acl.url_for(broker_url, record.id, password),
        api_token=token,
        engine_key=signing.public_pem(signer) if signer is not None else None,
        event_key=base64.b64encode(engine.event_keys.issue(record.id, record.public_key)).decode(),
    )


def _drop_token(store: Store, agent_id: str) -> None:
    """Delete the agent's token, if any; Refused if an operator's token has the agent's name."""
    held = next((t for t in store.tokens() if t.name == agent_id), None)
    if held is None:
        return
    if held.role != auth.Role.AGENT.name.lower():
        raise Refused(
            f"an operator's token is named {agent_id!r}, the name of agent {agent_id}'s own token: revoke it "
            f"(`converge tokens revoke {agent_id}`) and give it another name"
        )
    store.revoke_token(agent_id)


def decide(engine: Engine, agent_id: str, action: Action) -> AdmissionState:
    """The operator's decision; revoking deletes the agent's credentials and fails its running steps."""
    record = engine.store.enrollment(agent_id)
    if record is None:
        raise NotFound(f"agent {agent_id} has not enrolled: `converge agents list` shows who waits")
    state = next_state(agent_id, record.state, action)
    if action == "revoke":
        withdraw(engine, agent_id)
    engine.store.set_enrollment_state(agent_id, state, time.time())
    engine.event_keys.forget(agent_id)  # its status events are refused (or accepted) from now on
    log.warning("agent %s %s (was %s)", agent_id, state, record.state)
    return state


def withdraw(engine: Engine, agent_id: str) -> None:
    """Delete the agent's Redis user (closing its connections) and token; run its steps again elsewhere."""
    acl.revoke(engine.client, agent_id)
    acl_mirror.mirror_now(engine.settings.broker_url)
    _drop_token(engine.store, agent_id)
    lost = [
        StatusEvent(
            workflow_id=step.workflow_id,
            step_id=step.id,
            attempt=step.attempt,
            seq=ENGINE_SEQ,
            state=StepState.FAILED,
            agent=agent_id,
            at=datetime.now(UTC),
            error=f"worker lost: agent {agent_id} was revoked",
            retryable=True,
            lost=True,
        )
        for step in engine.store.started()
        if step.agent == agent_id
    ]
    if lost:
        engine.act(engine.store.record(lost))
        engine.dispatcher.stop([(e.step_id, e.attempt) for e in lost])


def _message(record: EnrollmentRecord) -> str:
    return {
        "pending": f"waiting for the operator: `converge agents admit {record.id}`",
        "admitted": "admitted",
        "denied": "the operator denied this agent",
        "revoked": "the operator revoked this agent",
    }.get(record.state, "")


def install_routes(api: FastAPI, engine: Engine) -> None:
    """The enrollment routes (open: the agent proves itself with its key) and the operator's decisions."""

    @api.post("/v1/enroll")
    def enroll_route(body: EnrollRequest) -> Admission:
        return enroll(engine.store, body, time.time(), engine.local_agent_key)

    @api.post("/v1/enroll/status")
    def status_route(body: StatusRequest) -> Admission:
        return status(engine, body, time.time())

    @api.post("/v1/agents/{agent_id}/{action}")
    def decide_route(agent_id: str, action: Action) -> dict[str, str]:
        return {"agent": agent_id, "admission": decide(engine, agent_id, action)}

"""The vault: credentials encrypted at rest, handed to the agent running a step while it runs, and audited.

Values are encrypted with Fernet (AES-128-CBC and HMAC-SHA256) under a key kept in a file of the engine's
(CONVERGE_HOME/keys/vault.key, or the setting `vault_key_file`), never in the store: a copy of the store
reveals no credential. An agent fetches a value with its own token at `POST /v1/agent/credentials`; every
value handed out and every refusal is audited (`converge credentials audit`), and no log line, error or
answer but the one to that agent carries a value.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from common import names
from common.errors import BadInput, ConvergeError
from common.settings import Settings
from common.store.interface import AuditEntry, StepHolder, Store, TokenRecord
from engine.auth import AGENT_ROUTES, Authenticator, Refusal
from engine.core import Engine
from engine.vault_rules import CredentialRequest, refusal, starting

log = logging.getLogger("converge.engine.vault")

VAULT_KEY = Path("keys/vault.key")
CREDENTIALS_ROUTE = AGENT_ROUTES + "credentials"
GRANTED, REFUSED = "granted", "refused"
_NAME = names.PLAIN_NAME
# How long a request waits for the engine to record that its step started (see vault_rules.starting), and
# how many requests may wait at once: an agent cannot hold the API's threads.
START_GRACE_S = 3.0
_POLL_S = 0.05
_WAITERS = 4


class VaultError(ConvergeError):
    """The vault's key cannot be read or made, or does not open a credential."""


def key_path(settings: Settings) -> Path:
    return settings.vault_key_file or settings.home / VAULT_KEY


def load_or_create_key(path: Path) -> bytes:
    """The Fernet key at `path`, made on first use (mode 0600). Two processes making it at once agree: the
    key is written aside, then linked into place only if no other key got there first."""
    try:
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, aside = tempfile.mkstemp(dir=path.parent, prefix=".vault.")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
                os.link(aside, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(aside)
        return path.read_bytes().strip()
    except OSError as exc:
        raise VaultError(
            f"cannot read or make the vault's key {path} ({exc.strerror}): run this where the engine's "
            "CONVERGE_HOME is, or point CONVERGE_VAULT_KEY_FILE at the key"
        ) from None


class Vault:
    """Encrypts and decrypts credential values with the engine's vault key."""

    def __init__(self, key: bytes, where: Path) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise VaultError(f"{where} holds no vault key (32 url-safe base64-encoded bytes)") from None
        self.where = where

    @classmethod
    def at(cls, path: Path) -> Vault:
        return cls(load_or_create_key(path), path)

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, ciphertext: str, name: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise VaultError(
                f"the vault key {self.where} does not open credential {name!r}: it was stored under another "
                "key; restore that key, or set the credential again (`converge credentials set`)"
            ) from None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadInput(
            f"{name!r} is not a credential name: up to 64 letters, digits, `.`, `_` or `-`, starting with a "
            "letter or digit"
        )
    return name


def put(store: Store, vault: Vault, name: str, value: str) -> bool:
    """Encrypt and store a credential, replacing any of that name; True if it is new."""
    check_name(name)
    if not value:
        raise BadInput(f"the value of credential {name!r} is empty: nothing was stored")
    return store.put_credential(name, vault.seal(value), time.time())


class Desk:
    """Hands credentials to the agents running the steps that may use them, and audits every decision."""

    def __init__(self, store: Store, vault: Vault) -> None:
        self.store = store
        self.vault = vault
        self._waiters = threading.BoundedSemaphore(_WAITERS)

    def hand_out(self, agent: str, request: CredentialRequest) -> str:
        """The credential's value, or HTTPException (403 a rule, 404 no such credential, 503 the key)."""
        reason = refusal(self._step(request), request, agent)
        if reason is not None:
            raise self._refuse(agent, request, 403, reason)
        ciphertext = self.store.credential_ciphertext(request.name)
        if ciphertext is None:
            reason = f"no credential named {request.name!r} in the vault: `converge credentials set` it"
            raise self._refuse(agent, request, 404, reason)
        try:
            value = self.vault.open(ciphertext, request.name)
        except VaultError as exc:
            raise self._refuse(agent, request, 503, str(exc)) from None
        self.store.audit(_entry(agent, request, GRANTED))
        log.info("credential %s handed to agent %s for step %s", request.name, agent, request.step_id)
        return value

    def _step(self, request: CredentialRequest) -> StepHolder | None:
        """The step, once the engine has recorded its start if that is a moment away (and few wait now)."""
        step = self.store.step_holder(request.step_id)
        if not starting(step, request) or not self._waiters.acquire(blocking=False):
            return step
        try:
            deadline = time.monotonic() + START_GRACE_S
            while starting(step, request) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                step = self.store.step_holder(request.step_id)
        finally:
            self._waiters.release()
        return step

    def _refuse(self, agent: str, request: CredentialRequest, status: int, reason: str) -> HTTPException:
        self.store.audit(_entry(agent, request, REFUSED, reason))
        log.warning("credential %s refused to agent %s (%d): %s", request.name, agent, status, reason)
        return HTTPException(status, f"credential {request.name!r} refused: {reason}")

    def refused_early(self, method: str, path: str, refused: Refusal) -> None:
        """Audit a token refused at the credentials route before its body was read: the wrong kind of token.
        A request with no token, or an unknown one, is only logged: no store write for the unauthenticated."""
        if path != CREDENTIALS_ROUTE or refused.token_name is None:
            return
        entry = AuditEntry(at=time.time(), agent=refused.token_name, outcome=REFUSED, reason=refused.message)
        try:
            self.store.audit(entry)
        except SQLAlchemyError as exc:
            log.warning("cannot audit a refusal of %s %s: %s", method, path, exc.__class__.__name__)


def _entry(agent: str, request: CredentialRequest, outcome: str, reason: str | None = None) -> AuditEntry:
    return AuditEntry(at=time.time(), agent=agent, outcome=outcome, reason=reason, **request.model_dump())


def install_routes(api: FastAPI, engine: Engine, authenticator: Authenticator) -> None:
    """The agents' credentials route; the vault's key is made now if the engine has none yet."""
    desk = Desk(engine.store, Vault.at(key_path(engine.settings)))
    authenticator.watchers.append(desk.refused_early)

    @api.post(CREDENTIALS_ROUTE)
    def credential(body: CredentialRequest, request: Request) -> JSONResponse:
        caller: TokenRecord = request.state.caller
        value = desk.hand_out(caller.name, body)
        return JSONResponse({"value": value}, headers={"Cache-Control": "no-store"})


def engine_reader(store: Store, vault: Vault, user: str) -> Callable[[str], str]:
    """A credential's value for the engine's own use (`user` says which part, for the audit): an import
    source's LDAP bind. ValueError with what to do when there is no such credential or the key does not
    open it. Every read is audited, like an agent's fetch."""

    def read(name: str) -> str:
        ciphertext = store.credential_ciphertext(name)
        entry = AuditEntry(at=time.time(), agent=user, outcome=GRANTED, name=name)
        try:
            if ciphertext is None:
                raise ValueError(
                    f"no credential named {name!r} in the vault: `converge credentials set {name}`"
                )
            value = vault.open(ciphertext, name)
        except (ValueError, VaultError) as exc:
            store.audit(replace(entry, outcome=REFUSED, reason=str(exc)))
            raise ValueError(str(exc)) from None
        store.audit(entry)
        return value

    return read

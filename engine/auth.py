"""Who may call the engine API: operator tokens, their roles, and the guard in front of every route.

A token is `cvg_` and 32 random bytes; the store keeps only its SHA-256, so a copy of the store grants
nothing. The guard is an ASGI middleware rather than a route dependency so that it refuses a request before
its body is read: an unauthenticated caller gets no parsing, no planning and no store write out of the
engine. It also caps the body's size, counted as it arrives, whatever Content-Length claims.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from enum import IntEnum

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import names
from common.errors import BadInput
from common.store.interface import Store, TokenRecord
from engine import session
from engine.answers import answer

log = logging.getLogger("converge.engine.auth")

TOKEN_PREFIX = "cvg_"
# `last used` is written at most this often per token: a store write per request would cost throughput.
TOUCH_EVERY_S = 60.0
_NAME = names.PLAIN_NAME
# Routes anyone may call: service managers probe health and readiness, the CA certificate is public by
# nature, and an agent enrolls before it has a token (it proves its key instead: engine.admission).
OPEN_ROUTES = {
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/ca"),
    ("POST", "/v1/enroll"),
    ("POST", "/v1/enroll/status"),
}
# Routes for agents only, each with its own token (role `agent`, named after the agent id): no operator
# token may call them, and an agent token may call nothing else.
AGENT_ROUTES = "/v1/agent/"
# Where the guard leaves the caller's TokenRecord for the route: `request.state.caller`.
CALLER = "caller"


class Role(IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    AGENT = 0  # an agent's own token, named after it: the agent routes and nothing else
    VIEWER = 1  # read: every GET
    OPERATOR = 2  # change workflows: apply, plan, cancel, retry, dead letters
    ADMIN = 3  # also what cannot be undone, and the agents: prune history, forget agents, policies

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            roles = ", ".join(r.name.lower() for r in cls)
            raise BadInput(f"{name!r} is not a role: use one of {roles}") from None


def new_token() -> str:
    """A fresh token: shown once to the operator, never stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(store: Store, name: str, role: Role) -> str:
    """Store a new token under `name` and return it: the only time it can be seen."""
    if not _NAME.fullmatch(name):
        raise BadInput(
            f"{name!r} is not a token name: up to 64 letters, digits, `.`, `_` or `-`, starting with a "
            "letter or digit"
        )
    token = new_token()
    store.create_token(name, role.name.lower(), digest_of(token))
    return token


def required_role(method: str, path: str) -> Role | None:
    """The least role a request needs; None for the open routes. Anything unlisted needs a token."""
    if (method, path) in OPEN_ROUTES or (method == "HEAD" and ("GET", path) in OPEN_ROUTES):
        return None
    if path.startswith(AGENT_ROUTES):
        return Role.AGENT
    if method in ("GET", "HEAD"):
        return Role.VIEWER
    # forget, admit, deny and revoke an agent: every change to one agent; and the agents' policies, which
    # change what every agent of a role does (its execution policy among them); and the import sources,
    # whose machines' agents the engine admits
    if path == "/v1/history/prune" or path.startswith(("/v1/agents/", "/v1/policies", "/v1/sources")):
        return Role.ADMIN
    return Role.OPERATOR


class Refusal(Exception):
    """Why a request may not go on: its status (401 or 403) and a message for the caller and the log."""

    def __init__(self, status: int, message: str, token_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.token_name = status, message, token_name


RefusalWatcher = Callable[[str, str, Refusal], None]
"""Told of each refused request: its method, its path and the refusal (engine.vault audits its own)."""


class Authenticator:
    """Checks a request's bearer token against the store and the role its route needs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.watchers: list[RefusalWatcher] = []

    def refused(self, method: str, path: str, refusal: Refusal) -> None:
        for watcher in self.watchers:
            watcher(method, path, refusal)

    def check(self, authorization: str | None, needed: Role) -> TokenRecord:
        """The token's record if it may make the request, else raise Refusal."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(
                401, "this request needs a token: send `Authorization: Bearer TOKEN` (CONVERGE_TOKEN)"
            )
        record = self.store.token_by_digest(digest_of(token.strip()))
        if record is None:
            raise Refusal(
                401, "the token is unknown or revoked: ask an admin for one (`converge tokens create`)"
            )
        agent_token, agent_route = record.role == Role.AGENT.name.lower(), needed is Role.AGENT
        if agent_token != agent_route:
            raise Refusal(403, _agent_mismatch(record.name, agent_route), record.name)
        if Role.named(record.role) < needed:
            raise Refusal(
                403,
                f"the token {record.name!r} is a {record.role}'s; this request needs {needed.name.lower()} "
                "or above",
                record.name,
            )
        now = time.time()
        if record.last_used_at is None or now - record.last_used_at > TOUCH_EVERY_S:
            self.store.touch_token(record.name, now)
        return record


def _agent_mismatch(name: str, agent_route: bool) -> str:
    if agent_route:
        return f"the token {name!r} is not an agent's: only an agent's own token may call {AGENT_ROUTES}..."
    return f"the token {name!r} is an agent's: it may call only {AGENT_ROUTES}..., use an operator's token"


class Guard:
    """ASGI middleware: the token check of every route but the open ones, and the body's size limit."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_body_bytes: int) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if session.is_console(path):
            await self._console(scope, receive, send, headers)
            return
        needed = required_role(method, path)
        if needed is not None:
            try:
                record = await run_in_threadpool(
                    self.authenticator.check, headers.get("authorization"), needed
                )
            except Refusal as refusal:
                await run_in_threadpool(self.authenticator.refused, method, path, refusal)
                log.warning(
                    "refused %s %s (%d, token %s): %s",
                    method,
                    path,
                    refusal.status,
                    refusal.token_name or "-",
                    refusal.message,
                )
                challenge = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
                await answer(refusal.status, refusal.message, challenge)(scope, receive, send)
                return
            except SQLAlchemyError as exc:
                log.warning("cannot check the token of %s %s: %s", method, path, exc.__class__.__name__)
                message = "the engine cannot check tokens: its store cannot be used; try again later"
                await answer(503, message)(scope, receive, send)
                return
            scope.setdefault("state", {})[CALLER] = record  # a route's `request.state.caller`
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await answer(413, self._too_large())(scope, receive, send)
            return
        await self.app(scope, self._capped(receive), send)

    async def _console(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """A console route: the session cookie stands for the bearer header, with the same roles (GET:
        viewer; POST: operator), and a POST must pass the CSRF checks (engine.session). A page asked for
        without a valid session redirects to the login page; a fragment or a POST gets the refusal."""
        method, path = scope["method"], scope["path"]
        if not session.is_open(method, path):
            token = session.cookie_token(headers.get("cookie"))
            needed = Role.VIEWER if method in ("GET", "HEAD") else Role.OPERATOR
            try:
                if token is None:
                    raise Refusal(401, "log in to the console first")
                if needed is Role.OPERATOR:
                    forged = session.csrf_refusal(headers, scope.get("scheme", "http"), token)
                    if forged is not None:
                        raise Refusal(403, forged)
                record = await run_in_threadpool(self.authenticator.check, "Bearer " + token, needed)
            except Refusal as refusal:
                log.warning("refused %s %s (%d): %s", method, path, refusal.status, refusal.message)
                if refusal.status == 401 and method == "GET" and "hx-request" not in headers:
                    await _redirect(session.LOGIN)(scope, receive, send)
                else:
                    await answer(refusal.status, refusal.message)(scope, receive, send)
                return
            except SQLAlchemyError:
                await answer(503, "the engine cannot check tokens now; try again later")(scope, receive, send)
                return
            scope.setdefault("state", {})[CALLER] = record
        await self.app(scope, self._capped(receive), send)

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.max_body_bytes} bytes (CONVERGE_MAX_BODY_BYTES): split "
            "the desired state into smaller files"
        )

    def _capped(self, receive: Receive) -> Receive:
        """`receive`, raising 413 once the body grows past the limit (a chunked body declares no length)."""
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, self._too_large())
            return message

        return capped


def _redirect(location: str) -> ASGIApp:
    return RedirectResponse(location, status_code=303)


def first_token(store: Store) -> str | None:
    """An admin token named `admin` while the store has no token at all (`engine init`); else None."""
    if store.tokens():
        return None
    return create(store, "admin", Role.ADMIN)

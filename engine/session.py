"""The console's browser session: the operator's token in a cookie, and the checks that keep another site
from using it (CSRF).

A browser cannot send a bearer header when it navigates, so the console's login page takes a token, checks it
and sets it as a cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
Secure over HTTPS, Path=/. The guard (engine.auth) accepts that cookie on console routes only; the JSON API
under /v1 reads the Authorization header and nothing else. A state-changing console POST must also come from
the engine's own origin (its Origin header, or its Referer when a browser sends no Origin) and carry the
session's CSRF token in the `X-CSRF-Token` header, which only a page the engine served can know.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

COOKIE = "converge_session"
CSRF_HEADER = "x-csrf-token"
LOGIN = "/console/login"
LOGOUT = "/console/logout"
STATIC = "/console/static/"


def is_console(path: str) -> bool:
    """Whether the path is the console's: these alone accept the session cookie."""
    return path == "/" or path == "/console" or path.startswith("/console/")


def is_open(method: str, path: str) -> bool:
    """The console routes anyone may call: the login page and its form, logout, and the static files."""
    return path in (LOGIN, LOGOUT) or (method in ("GET", "HEAD") and path.startswith(STATIC))


def cookie_token(cookie_header: str | None) -> str | None:
    """The token the session cookie holds, if any."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except Exception:  # a malformed Cookie header: no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def csrf_of(token: str) -> str:
    """The session's CSRF token: derived from the session's own token, so it needs no server state, and
    no other site can compute it (it cannot read the HttpOnly cookie it would derive from)."""
    return hashlib.sha256(b"converge-console-csrf:" + token.encode("utf-8")).hexdigest()


def same_origin(headers: dict[str, str], scheme: str) -> bool:
    """Whether the request says it comes from a page of this engine: its Origin (else its Referer) has the
    scheme and host the request was sent to."""
    host = headers.get("host", "")
    claimed = headers.get("origin") or headers.get("referer") or ""
    parts = urlsplit(claimed)
    return bool(host) and parts.scheme == scheme and parts.netloc == host


def csrf_refusal(headers: dict[str, str], scheme: str, token: str) -> str | None:
    """Why a state-changing console request is refused as a possible forgery; None when it is not."""
    if not same_origin(headers, scheme):
        return "the request does not come from this engine's console (Origin or Referer): reload the page"
    given = headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode("latin-1"), csrf_of(token).encode("latin-1")):
        return "the request has no valid CSRF token (X-CSRF-Token): reload the console page and try again"
    return None


def set_cookie_header(token: str, secure: bool) -> str:
    attributes = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    return attributes + ("; Secure" if secure else "")


def clear_cookie_header(secure: bool) -> str:
    attributes = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    return attributes + ("; Secure" if secure else "")

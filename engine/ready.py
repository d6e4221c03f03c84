"""Whether the engine can serve now: the document of `GET /v1/ready`, for a service manager's readiness check.

Liveness stays `GET /v1/health` (engine.health), which answers 200 with `ok: false` while Redis or the store
is down: a process that answers is alive, and restarting it would not bring its Redis back. Readiness asks
the two parts every request needs, each with a trivial call (the store's `SELECT 1`, Redis's PING), so that
a load balancer sends no traffic to an engine that would answer 503. Messages name the part, where it is
(passwords as `***`) and what to check; never a password.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from common.settings import redact
from common.store.interface import Store
from engine.health import describe

# Anything in an error's text that looks like a URL: shown through `redact`, since a driver may quote the
# URL it was given, password and all.
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """`text` with every URL in it redacted (common.settings.redact)."""
    return _URL.sub(lambda match: redact(match.group(0)), text)


def check_store(store: Store, store_url: str) -> dict[str, Any]:
    """`{"ok", "error"}` of the store: whether it answers a trivial query."""
    try:
        store.ping()
    except Exception as exc:  # any failure means not ready; what it was goes in the message
        return {
            "ok": False,
            "error": scrub(
                f"the store at {redact(store_url)} does not answer ({describe(exc)}): check that the "
                "database runs and accepts this engine's connections, and CONVERGE_STORE_URL"
            ),
        }
    return {"ok": True, "error": None}


def check_redis(client: redis.Redis, broker_url: str) -> dict[str, Any]:
    """`{"ok", "error"}` of Redis: whether it answers PING."""
    try:
        client.ping()
    except redis.RedisError as exc:
        return {
            "ok": False,
            "error": scrub(
                f"Redis at {redact(broker_url)} does not answer PING ({exc.__class__.__name__}: {exc}): "
                "check that it runs and CONVERGE_BROKER_URL"
            ),
        }
    return {"ok": True, "error": None}


def report(store: Store, store_url: str, client: redis.Redis, broker_url: str) -> dict[str, Any]:
    """`{"ready", "store", "redis"}`, with `error` (one line: each part that is not ready, and why) when
    `ready` is false."""
    parts = {"store": check_store(store, store_url), "redis": check_redis(client, broker_url)}
    document: dict[str, Any] = {"ready": all(part["ok"] for part in parts.values()), **parts}
    if not document["ready"]:
        document["error"] = "not ready: " + "; ".join(p["error"] for p in parts.values() if not p["ok"])
    return document

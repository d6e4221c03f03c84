"""The agent runs only steps the engine signed: anything else on its queues is refused, logged and counted.

Anyone who can write to a queue could otherwise make the agent run a command. The engine signs each step
message with its Ed25519 key (common.signing); the agent checks the signature against the engine's public
key (its `engine_key` setting) before anything else, in the pool process that would run the step. What
fails is counted in Redis (`converge:agent:<id>:refused`, by reason) for the operator to see.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents.junk import cut
from common import names, signing
from common.errors import BadInput

log = logging.getLogger("converge.agent")


def load_engine_key(path: Path | None) -> Ed25519PublicKey:
    """The engine's public key from the agent's `engine_key` setting; BadInput if it is not usable."""
    if path is None:
        raise BadInput(
            "no engine_key: the agent runs only steps the engine signed. Copy the engine's "
            "CONVERGE_HOME/keys/signing.pub to this host and set it (`converge-agent config set "
            "engine_key=PATH`, or CONVERGE_AGENT_ENGINE_KEY)"
        )
    try:
        return signing.load_public(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BadInput(
            f"engine_key {path} cannot be used ({exc}): it must be the engine's signing.pub (PEM)"
        ) from exc


class Gate:
    """Checks each delivery's signature; counts and logs the refused ones."""

    def __init__(self, key: Ed25519PublicKey, agent_id: str) -> None:
        self.key = key
        self.agent_id = agent_id

    def admits(self, fields: dict[str, Any], client: redis.Redis) -> bool:
        problem = signing.verify(self.key, fields)
        if problem is None:
            return True
        reason = "unsigned" if signing.SIG not in fields else "bad signature"
        try:
            total = client.hincrby(names.agent_refused_key(self.agent_id), reason, 1)
        except redis.RedisError:
            total = -1
        log.error(
            "refused a step message: %s (step %s, resource %s); %s refused so far. Only the engine signs "
            "steps: find what else writes to this Redis",
            problem,
            cut(repr(fields.get("step_id")), 80),
            cut(repr(fields.get("resource")), 80),
            total if total >= 0 else "?",
        )
        return False

"""Chaos tests: real Redis, engine and agent processes, and real faults (SIGKILL, SIGSTOP, a Redis killed and
restarted, a TCP proxy between an agent and Redis, a store lock held by another process).

The real parts are the integration tests' own (a private Redis, the engine and agents as child processes).
"""

from __future__ import annotations

from tests.integration.conftest import (
    cluster,
    postgres_url,
    quickstart_left_alone,
    redis_server,
    tls_cluster,
)

__all__ = ["cluster", "postgres_url", "quickstart_left_alone", "redis_server", "tls_cluster"]

"""Defaults that more than one part of Converge relies on, each defined once.

The engine's settings, the agents' settings and what an agent announces about itself must agree on these;
a change here changes all of them.
"""

from __future__ import annotations

# Longer than any step may run: kombu re-delivers unacknowledged messages older than this.
VISIBILITY_TIMEOUT_S: float = 4 * 3600
# The no-progress timeout of a step that sets none.
STEP_TIMEOUT_S = 3600.0
# How long after an agent's last heartbeat the engine holds it lost (what an agent that announced none uses).
HEARTBEAT_TTL_S = 8.0
# How often an agent renews its alive key, and how many renewals may fail in a row before it ends its steps.
HEARTBEAT_INTERVAL_S = 1.0
MAX_CONNECTION_FAILURES = 5

"""Whether an agent is alive and ready, from the health file its heartbeat writes: the rules alone, no I/O.

The heartbeat thread (agents.heartbeat) rewrites the file on every beat (agents.healthfile), so its age says
whether the agent's main process still beats: a file older than `STALE_BEATS` heartbeat intervals means a
process that is stuck or gone, even when its pid is still taken. Liveness (`converge-agent health --alive`,
for a watchdog or a liveness probe) asks only that; readiness also wants its last heartbeat to have reached
Redis and the agent to be admitted, since an agent without either takes no step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

HEALTH_FILE = "health.json"  # in the agent's own state folder (AgentSettings.agent_dir)
# The file is stale, and the agent not alive, after this many heartbeat intervals without a beat: one late
# beat (a slow Redis, a busy host) is not an outage, three are.
STALE_BEATS = 3
# Admission states in which an agent takes steps: `trusted` (given the broker's credentials, not enrolled)
# and `admitted` (enrolled, and the operator said yes).
SERVING = frozenset({"trusted", "admitted"})


class HealthRecord(BaseModel):
    """What an agent's heartbeat says of it, once a beat; never a secret."""

    agent_id: str
    host: str
    pid: int
    at: datetime  # when the heartbeat wrote it, with a time zone
    heartbeat_interval_s: float = Field(gt=0)
    redis_ok: bool  # whether the last heartbeat reached Redis
    redis_error: str | None = None
    admission: str  # `trusted`, `admitted`, or `turned away` once the operator denied or revoked it
    roles: list[str] = Field(default_factory=list)
    leader_of: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)  # what it consumes now
    stopped: bool = False  # written last by an agent that stopped cleanly


@dataclass(frozen=True)
class Verdict:
    """The answer of `converge-agent health`: ok or not, and one line that says why."""

    ok: bool
    reason: str


def age_s(record: HealthRecord, now: float) -> float:
    """How long ago the record was written (never negative: clocks move)."""
    return max(0.0, now - record.at.timestamp())


def judge(record: HealthRecord, now: float, pid_alive: bool | None, *, alive_only: bool) -> Verdict:
    """Whether the agent that wrote `record` is alive (`alive_only`) or also ready, at Unix time `now`.

    `pid_alive` is whether its pid is a live process here; None when that cannot be known (the record
    comes from another host), and the file's age decides alone.
    """
    name = f"agent {record.agent_id}"
    if record.stopped:
        return Verdict(
            False, f"{name} stopped at {record.at.isoformat()}: start it with `converge-agent run`"
        )
    if pid_alive is False:
        return Verdict(
            False, f"{name} is not running (process {record.pid} is gone): start it with `converge-agent run`"
        )
    age, limit = age_s(record, now), STALE_BEATS * record.heartbeat_interval_s
    if age > limit:
        return Verdict(
            False,
            f"the agent's last heartbeat was {age:.0f} s ago (more than {STALE_BEATS} intervals of "
            f"{record.heartbeat_interval_s:g} s): {name} (pid {record.pid}) is stuck or gone; see its log, "
            "or restart it",
        )
    if alive_only:
        return Verdict(True, f"{name} is alive (pid {record.pid}, last heartbeat {age:.0f} s ago)")
    if not record.redis_ok:
        why = f" ({record.redis_error})" if record.redis_error else ""
        return Verdict(
            False,
            f"{name} is alive but cannot reach Redis{why}: check that Redis runs and the agent's broker_url",
        )
    if record.admission not in SERVING:
        return Verdict(
            False,
            f"{name} is alive but not admitted ({record.admission}): ask the engine's operator to admit it "
            f"(`converge agents admit {record.agent_id}`)",
        )
    leads = f", leads {', '.join(record.leader_of)}" if record.leader_of else ", leads no role (a backup)"
    return Verdict(True, f"{name} is ready (pid {record.pid}{leads})")

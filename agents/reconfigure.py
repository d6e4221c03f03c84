"""What a change of the agent's settings asks of the running agent: pure rules, no I/O (agents.live acts).

`plan(old, new)` compares two resolutions of the settings (as `agents.config.load` makes them, before any
admission replaces the broker's credentials) and says what to do live and which changed keys only a restart
takes up. Nothing changed is ever ignored without a word: each key is live, needs a restart, or is read only
by a command other than `run` (`NOT_RUN`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.config import KEYS, AgentSettings

# Applied to the running agent: the pool's size (the throttle, a hard limit, and pool_min), its roles
# (queues, election, announcement), and what the steps read (timeout, progress interval, log level).
LIVE = frozenset(
    {"throttle", "pool_min", "roles", "loglevel", "step_timeout_s", "progress_interval_s", "task_events"}
)
# Read by `converge-agent capabilities`, not by a running agent: nothing to apply.
NOT_RUN = frozenset({"capabilities_file"})
RESTART = frozenset(KEYS) - LIVE - NOT_RUN


@dataclass(frozen=True)
class Plan:
    """What to do. None (or empty) for what did not change."""

    throttle: int | None = None
    pool_min: int | None = None
    roles_added: tuple[str, ...] = ()
    roles_removed: tuple[str, ...] = ()
    loglevel: str | None = None
    task_events: bool | None = None
    # roles, timeout, interval or log level changed: the pool processes read them again (agents.shared)
    step_settings: bool = False
    restart: tuple[str, ...] = ()  # changed keys the running agent cannot take up
    changed: tuple[str, ...] = field(default=())  # every key that changed, in KEYS order

    @property
    def live(self) -> tuple[str, ...]:
        return tuple(key for key in self.changed if key in LIVE)


def plan(old: AgentSettings, new: AgentSettings) -> Plan:
    """What going from `old` to `new` asks of a running agent."""
    changed = tuple(key for key in KEYS if getattr(old, key) != getattr(new, key))
    if not changed:
        return Plan()
    added = tuple(sorted(set(new.roles) - set(old.roles)))
    removed = tuple(sorted(set(old.roles) - set(new.roles)))
    return Plan(
        throttle=new.throttle if "throttle" in changed else None,
        pool_min=new.pool_min if "pool_min" in changed else None,
        roles_added=added,
        roles_removed=removed,
        loglevel=new.loglevel if "loglevel" in changed else None,
        task_events=new.task_events if "task_events" in changed else None,
        step_settings=bool({"roles", "step_timeout_s", "progress_interval_s", "loglevel"} & set(changed)),
        restart=tuple(key for key in changed if key in RESTART),
        changed=changed,
    )

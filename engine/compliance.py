"""What a schedule's check found: the drifted resources, with their diffs and since when. Pure logic.

A check is a plan run by the agents (engine.checks): every resource whose agent says `apply` would change
something has drifted. A resource that drifted in the last check keeps the time it was first seen drifting
(`since`), so the report says how long a host has been off its desired state, not only that it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.models import CheckResult

COMPLIANT, DRIFTED, ERROR, PENDING = "compliant", "drifted", "error", "pending"
MODES = ("report", "enforce")


def report(
    results: Iterable[CheckResult], previous: list[dict[str, Any]], now: float
) -> tuple[str, list[dict[str, Any]]]:
    """The state of a desired state (compliant, drifted or error) and its report: one entry per resource
    (per agent, under fan-out) that drifted or could not be checked."""
    since = {(e["resource"], e["agent"]): e["since"] for e in previous if "since" in e}
    entries: list[dict[str, Any]] = []
    for result in results:
        key = (result.resource, result.agent)
        if result.error is not None:
            entries.append({"resource": result.resource, "agent": result.agent, "error": result.error})
        elif result.change is not None and result.change.action != "none":
            entries.append(
                {
                    "resource": result.resource,
                    "agent": result.agent,
                    "action": result.change.action,
                    "diff": result.change.diff,
                    "since": since.get(key, now),
                }
            )
    if any("action" in e for e in entries):
        return DRIFTED, entries
    return (ERROR if entries else COMPLIANT), entries


def drifted(entries: Iterable[dict[str, Any]]) -> int:
    """How many resources of a report drifted (not counting those that could not be checked)."""
    return sum(1 for e in entries if "action" in e)

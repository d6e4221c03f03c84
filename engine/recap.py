"""The recap that ends `apply --wait`: per role and in total, how the steps ended, as Ansible's
`ok=7 changed=2 failed=0` does. Pure: counts from a workflow's steps, and the lines that show them."""

from __future__ import annotations

from collections.abc import Iterable

from common.models import StepView

# The four counts every recap shows; the other two only when some step ended that way.
SHOWN = ("ok", "changed", "failed", "skipped")
COUNTS = (*SHOWN, "cancelled", "unfinished")
TOTAL = "total"

Recap = dict[str, dict[str, int]]


def outcome(step: StepView) -> str:
    """Which count a step adds to: `ok` succeeded with nothing to change, `changed` succeeded by changing
    something, `failed` failed or timed out, `skipped` not run because a dependency did not succeed,
    `cancelled`, and `unfinished` for a step still pending, queued or started (a --timeout ran out)."""
    state = str(step.state)
    if state == "succeeded":
        return "changed" if step.changed else "ok"
    if state in ("failed", "timed_out"):
        return "failed"
    if state in ("skipped", "cancelled"):
        return state
    return "unfinished"


def recap(steps: Iterable[StepView]) -> Recap:
    """Counts per role, roles in name order, then `total`."""
    by_role: Recap = {}
    total = dict.fromkeys(COUNTS, 0)
    for step in steps:
        counts = by_role.setdefault(step.role, dict.fromkeys(COUNTS, 0))
        kind = outcome(step)
        counts[kind] += 1
        total[kind] += 1
    return {**dict(sorted(by_role.items())), TOTAL: total}


def lines(counts: Recap) -> list[str]:
    """One line per role and one for the total: `web    ok=3 changed=1 failed=0 skipped=0`."""
    width = max(len(name) for name in counts)
    return [f"{name:<{width}}  {_counts(values)}" for name, values in counts.items()]


def _counts(values: dict[str, int]) -> str:
    shown = [key for key in COUNTS if key in SHOWN or values[key]]
    return " ".join(f"{key}={values[key]}" for key in shown)

"""What one poll of an import source changes: the machines it lists now against those the store knows for
that source. Pure: the monitor loads, calls `changes`, and saves."""

from __future__ import annotations

from dataclasses import dataclass

REMOVED = "removed"
# The machine states that follow their import workflow's state: not `imported`, whose workflow has
# succeeded for good, so that each pass reads only the workflows of the imports still open.
FOLLOWED = ("discovered", "importing", "failed")


@dataclass(frozen=True)
class Changes:
    new: list[str]  # never seen from this source: each starts one import workflow
    removed: list[str]  # known, not listed any more: flagged `removed`, never deleted
    back: list[str]  # flagged `removed` before, listed again: imported again (what it was is not kept)


def changes(seen: set[str], known: dict[str, str]) -> Changes:
    """`seen`: the host names the source lists now; `known`: host name -> state, this source's machines."""
    new = sorted(seen - known.keys())
    removed = sorted(name for name, state in known.items() if name not in seen and state != REMOVED)
    back = sorted(name for name, state in known.items() if name in seen and state == REMOVED)
    return Changes(new=new, removed=removed, back=back)


def followed(
    machine: str, has_differences: bool, workflow: str | None, error: str | None
) -> tuple[str, list[str] | None] | None:
    """Where a machine in state `machine` goes when its import workflow is in state `workflow` (a
    WorkflowState value; `error` its failed step's): (state, differences, or None to keep those held), or
    None to stay.

    The import step records `imported`, or `failed` with its differences; this catches what the step
    cannot say: a cancelled or aborted workflow, a step that failed before it compared anything (no agent
    enrolled in time, no such catalog), a retried workflow, and a record the step made before the monitor
    noted the workflow's start."""
    if workflow is None:
        return None
    if workflow in ("pending", "running", "cancelling"):
        return ("importing", []) if machine in ("failed", "discovered") else None
    if workflow == "succeeded":
        return ("imported", []) if machine != "imported" else None
    if machine == "failed" and has_differences:
        return None  # the step's differences say why
    why = error or f"the import workflow was {workflow}"
    return ("failed", [f"{why}; `converge workflows retry` it once that is fixed"])

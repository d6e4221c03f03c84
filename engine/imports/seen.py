"""What one poll of an import source changes: the machines it lists now against those the store knows for
that source. Pure: the monitor loads, calls `changes`, and saves."""

from __future__ import annotations

from dataclasses import dataclass

REMOVED = "removed"


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

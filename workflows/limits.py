"""The limits a desired state is read under, so that no document costs the reader more than its size.

An operator's file is never near them; a document from someone hostile (a "billion laughs" alias bomb, a
file nested ten thousand levels deep, a body of 200,000 resources sent to the API) is refused with a
message instead of freezing the engine. docs/file-format.md ("Limits") lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_FILE_BYTES = 5_000_000
"""The largest desired-state document, in bytes of UTF-8."""
MAX_RESOURCES = 10_000
"""The most resources one desired state may hold: a bigger estate is split into several files."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists, aliases expanded; real files nest fewer than ten levels."""
MAX_ALIAS_EXPANSION = 5_000_000
"""What aliases may add to a document once expanded, counting one per value plus its characters: at
most as much again as the largest file holds, so expanding a document never costs more than reading one."""


@dataclass(frozen=True)
class Limits:
    """The limits a desired-state document is read under (the module's constants unless a caller, such as
    a benchmark of big estates, widens them)."""

    max_bytes: int = MAX_FILE_BYTES
    max_resources: int = MAX_RESOURCES
    max_depth: int = MAX_DEPTH
    max_alias_expansion: int = MAX_ALIAS_EXPANSION


LIMITS = Limits()


class TooLarge(Exception):
    """The document passes one of its limits; reading stopped there. `line` is 1-based, None if unknown."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.line: int | None = None if mark is None else mark.line + 1


def too_many_resources(limit: int) -> str:
    """What to tell the sender of a desired state with more than `limit` resources."""
    return (
        f"more than {limit:,} resources, the most one desired state may hold: split it into several files "
        f"of at most {limit:,} resources and apply each; keep every resource in the file of those it "
        "depends on (`depends_on` names resources of its own file only)"
    )


def too_many_bytes(limit: int) -> str:
    """What to tell the sender of a desired state bigger than `limit` bytes."""
    return (
        f"the document is larger than {limit:,} bytes, the most a desired state may hold: split it into "
        "several files and apply each; keep every resource in the file of those it depends on"
    )


def too_deep(limit: int) -> str:
    """What to tell the sender of a document nested more than `limit` levels deep."""
    return (
        f"the document nests mappings and lists more than {limit} levels deep (aliases expanded): flatten it"
    )

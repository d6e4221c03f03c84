"""Summaries of py-spy's raw (collapsed) stacks: where the CPU of a process went, by function."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

PROJECT = ("common/", "engine/", "agents/", "workflows/")
_LINE = re.compile(r":\d+\)$")


def _frames(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Inclusive and self samples per function (`name (file)`), and the total number of samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")[1:]]  # the first is the process
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return inclusive, own, total


def summary(path: Path, top: int = 12) -> list[str]:
    """The project's functions by inclusive share, then the leaf functions by self share."""
    inclusive, own, total = _frames(path)
    if not total:
        return ["no samples"]
    lines = [f"{total} samples"]
    # The project's own functions, leaving out the entry points that every sample goes through.
    ours = [(f, n) for f, n in inclusive.most_common() if any(p in f for p in PROJECT) and n < 0.9 * total]
    lines += [f"incl {100 * n / total:4.1f}% {f}" for f, n in ours[:top]]
    lines += [f"self {100 * n / total:4.1f}% {f}" for f, n in own.most_common(top)]
    return lines


if __name__ == "__main__":
    import sys

    for text in summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25):
        print(text)

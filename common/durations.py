"""Durations as operators write them: `90s`, `30m`, `1h`, `1h30m`, `2d`, or plain seconds (`45`)."""

from __future__ import annotations

import re

from common.errors import BadInput

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")


def parse(text: str, *, least_s: float = 1.0, most_s: float = 366 * 86400.0, what: str = "duration") -> float:
    """Seconds; BadInput naming the form expected when `text` is not a duration within the bounds."""
    given = text.strip().lower()
    try:
        seconds = float(given)
    except ValueError:
        if not _WHOLE.fullmatch(given):
            raise BadInput(
                f"{what} {text!r} is not a duration: write it as 90s, 30m, 1h, 1h30m or 2d"
            ) from None
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(given))
    if not least_s <= seconds <= most_s:
        raise BadInput(f"{what} {text!r} must be between {shown(least_s)} and {shown(most_s)}")
    return seconds


def shown(seconds: float) -> str:
    """The shortest of the forms `parse` reads: 3600 -> `1h`, 5400 -> `1h30m`, 2.5 -> `2.5s`."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)

"""Debian version ordering, as `dpkg --compare-versions` orders them (deb-version(7)): pure, no dpkg needed.

A version is `[epoch:]upstream[-revision]`. Parts compare in turn: the epoch as a number, then the upstream
version and the revision, each as alternating runs of non-digits (compared character by character, where `~`
sorts before everything, even the end, and letters before other characters) and digits (compared as numbers).
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]*")


def compare(a: str, b: str) -> int:
    """Negative when `a` is older than `b`, zero when they are equal, positive when `a` is newer."""
    a_epoch, a_upstream, a_revision = _split(a)
    b_epoch, b_upstream, b_revision = _split(b)
    if a_epoch != b_epoch:
        return a_epoch - b_epoch
    return _compare_part(a_upstream, b_upstream) or _compare_part(a_revision, b_revision)


def _split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch) if epoch.isdigit() else 0, upstream, revision


def _order(char: str) -> int:
    """The weight of one character of a non-digit run; the end of the string (and a digit) weighs 0."""
    if char == "~":
        return -1
    if not char or char.isdigit():
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        a_run = _DIGITS.match(a, i)
        b_run = _DIGITS.match(b, j)
        a_digits = a_run.group() if a_run else ""
        b_digits = b_run.group() if b_run else ""
        difference = int(a_digits or "0") - int(b_digits or "0")
        if difference:
            return difference
        i, j = i + len(a_digits), j + len(b_digits)
    return 0

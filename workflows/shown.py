"""Values quoted in messages, written as the operator wrote them: YAML flow style, cut when long.

`{'a': 1}` in a message reads as Python; `{a: 1}` reads as the file. Strings stay plain when YAML would
read them back as the same string, and are quoted (JSON style) when not: `"0644"` is not `0644`.
The value is rendered with a budget, so a value that aliases made huge costs no more than a short one.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from typing import Any

import yaml

SHOWN_CHARS = 60
_ITEMS = 4
_DEPTH = 2
_PLAIN = re.compile(r"[A-Za-z0-9_./~+$()-][A-Za-z0-9_./~+$()@=-]*")  # one word: spaces read as prose


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`value` as YAML flow text of at most `limit` characters (`...` marks a cut)."""
    text = _render(value, 0, limit)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _render(value: Any, depth: int, limit: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _string(value, limit)
    if isinstance(value, dict):
        if depth >= _DEPTH:
            return "{...}" if value else "{}"
        pairs = [
            f"{_render(k, depth + 1, limit)}: {_render(v, depth + 1, limit)}"
            for k, v in _first(value.items())
        ]
        return "{" + ", ".join(pairs) + (", ...}" if len(value) > _ITEMS else "}")
    if isinstance(value, list | tuple):
        if depth >= _DEPTH:
            return "[...]" if value else "[]"
        items = [_render(v, depth + 1, limit) for v in _first(value)]
        return "[" + ", ".join(items) + (", ...]" if len(value) > _ITEMS else "]")
    if isinstance(value, bytes):
        return "!!binary ..."
    return _string(str(value), limit)


def _first(items: Iterable[Any]) -> list[Any]:
    return list(itertools.islice(items, _ITEMS))


def _string(text: str, limit: int) -> str:
    budget = max(limit - 5, 1)  # room for the quotes and the `...` of a cut
    cut = len(text) > budget
    if cut:
        text = text[:budget]
    if _PLAIN.fullmatch(text) and _reads_back(text):
        return f"{text}..." if cut else text
    quoted = json.dumps(text, ensure_ascii=False)
    return f'{quoted[:-1]}..."' if cut else quoted


def _reads_back(text: str) -> bool:
    """Whether YAML reads `text`, unquoted, as this same string (not a number, a boolean, null...)."""
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def named(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A key, kind or reference from the file: `in backticks` when plain, else as `shown` quotes it."""
    text = shown(value, limit)
    return f"`{text}`" if isinstance(value, str) and not text.startswith('"') else text

"""The capability test, relaxed: operating-system updates may differ between machines of a catalog.

The built-in test wants the expected and the actual capability documents identical. This extension keeps
every difference the built-in finds except those in the `updates` section. Copy it into the agent's
extensions folder (`converge-agent config show` names it under `extensions_dir`); `chmod go-w` it.
"""

from __future__ import annotations

from typing import Any

TEST = "capability_test"


def register(ext: Any) -> None:
    strict = ext.builtin_validator(TEST)

    def relaxed(expected: str, actual: str) -> list[Any]:
        return [d for d in strict(expected, actual) if d.section != "updates"]

    ext.validator(TEST, relaxed)

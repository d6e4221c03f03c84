"""A provider whose `check` or `apply` an extension replaced, or wrapped with hooks before and after.

The hooked provider keeps the kind, spec model, role and words of the one it wraps, so that the planner
and every message read it as the same kind; only what runs on the agent changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from common.models import Change
from workflows.context import StepContext
from workflows.registry import Provider

Part = Literal["check", "apply"]
PARTS: tuple[Part, ...] = ("check", "apply")
How = Literal["replace", "before", "after"]

CheckFn = Callable[[Any, StepContext], Change]
ApplyFn = Callable[[Any, Change, StepContext], None]


class HookedProvider(Provider[BaseModel]):
    """`base` with its parts replaced or wrapped. Hooks run in the order they were added.

    - check: `before(spec, ctx)`; `replace(spec, ctx) -> Change`; `after(spec, ctx, change)`, which may
      return another Change to report instead.
    - apply: `before(spec, change, ctx)`; `replace(spec, change, ctx)`; `after(spec, change, ctx)`.
    """

    def __init__(self, base: Provider[Any]) -> None:
        self.base = base
        self.kind = base.kind  # type: ignore[misc]
        self.spec_model = base.spec_model  # type: ignore[misc]
        self.default_role = base.default_role  # type: ignore[misc]
        self.gate = base.gate  # type: ignore[misc]
        self.create_words = base.create_words  # type: ignore[misc]
        self._check: CheckFn = base.check
        self._apply: ApplyFn = base.apply
        self._before: dict[Part, list[Callable[..., Any]]] = {"check": [], "apply": []}
        self._after: dict[Part, list[Callable[..., Any]]] = {"check": [], "apply": []}

    def current(self, part: Part) -> Callable[..., Any]:
        """What runs as `part` now, without the hooks: the built-in, or what replaced it."""
        return self._check if part == "check" else self._apply

    def hook(self, part: Part, how: How, fn: Callable[..., Any]) -> None:
        if how == "replace":
            if part == "check":
                self._check = fn
            else:
                self._apply = fn
        elif how == "before":
            self._before[part].append(fn)
        else:
            self._after[part].append(fn)

    def parse(self, spec: dict[str, Any]) -> BaseModel:
        parsed: BaseModel = self.base.parse(spec)
        return parsed

    def check(self, spec: BaseModel, ctx: StepContext) -> Change:
        for before in self._before["check"]:
            before(spec, ctx)
        change = self._check(spec, ctx)
        for after in self._after["check"]:
            replaced = after(spec, ctx, change)
            if isinstance(replaced, Change):
                change = replaced
        return change

    def apply(self, spec: BaseModel, change: Change, ctx: StepContext) -> None:
        for before in self._before["apply"]:
            before(spec, change, ctx)
        self._apply(spec, change, ctx)
        for after in self._after["apply"]:
            after(spec, change, ctx)

"""The `wait_for` kind: a pause, or a wait until a path exists; a gate that runs every time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.models import Change
from workflows.context import StepContext
from workflows.kinds._common import AbsolutePath
from workflows.kinds.paths import confine
from workflows.registry import Provider, StepError

PROGRESS_EVERY_S = 0.4
"""Progress cadence while waiting: under the 0.5 s promised, with room for a late wake-up."""
SLEEP_S = 0.25
"""The longest single sleep of a `seconds` wait."""
PATH_POLL_S = 0.2
"""How often a wait for `path` looks for it."""


class WaitForSpec(BaseModel):
    """Either `seconds` to wait, or a `path` to wait for, failing when it is not there after `within_s`."""

    model_config = ConfigDict(extra="forbid")

    seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="How long to wait.")
    path: AbsolutePath | None = Field(default=None, description="A path to wait for.")
    within_s: float = Field(
        default=60.0,
        gt=0,
        allow_inf_nan=False,
        description="With `path`: fail when it has not appeared after this long.",
    )

    @model_validator(mode="after")
    def _exactly_one_target(self) -> Self:
        if (self.seconds is None) == (self.path is None):
            raise ValueError("give exactly one of `seconds` (how long to wait) or `path` (what to wait for)")
        if self.path is None and "within_s" in self.model_fields_set:
            raise ValueError("`within_s` bounds a wait for `path`; it has no meaning with `seconds`")
        return self


class WaitForProvider(Provider[WaitForSpec]):
    """Waits, reporting progress as it goes; `check` always finds nothing to change.

    A `path` must lie under the agent's allowed paths: `check`, which runs before every `apply`, says so.
    """

    kind = "wait_for"
    spec_model = WaitForSpec
    gate = True

    def check(self, spec: WaitForSpec, ctx: StepContext) -> Change:
        if spec.seconds is not None:
            return Change(action="none", diff=f"wait {spec.seconds:g}s")
        if spec.path is not None and os.path.exists(confine(spec.path, ctx)):
            return Change(action="none", diff=f"wait for {spec.path} (present)")
        return Change(action="none", diff=f"wait up to {spec.within_s:g}s for {spec.path}")

    def apply(self, spec: WaitForSpec, change: Change, ctx: StepContext) -> None:
        if spec.seconds is not None:
            _wait_seconds(spec.seconds, ctx)
        elif spec.path is not None:
            _wait_for_path(spec.path, spec.within_s, ctx)


def _wait_seconds(seconds: float, ctx: StepContext) -> None:
    if seconds <= 0:
        return  # a no-op step: benchmarks use it to measure the engine, so it must cost nothing

    def report(elapsed: float) -> None:
        ctx.progress(min(100.0, 100.0 * elapsed / seconds), f"waited {elapsed:.1f}s of {seconds:g}s")

    report(0.0)
    _sleep_until(seconds, lambda: False, report, SLEEP_S)
    report(seconds)


def _wait_for_path(path: str, within_s: float, ctx: StepContext) -> None:
    if os.path.exists(path):
        return
    ctx.progress(None, f"waiting up to {within_s:g}s for {path}")

    def report(elapsed: float) -> None:
        ctx.progress(None, f"waited {elapsed:.1f}s of up to {within_s:g}s for {path}")

    if not _sleep_until(within_s, lambda: os.path.exists(path), report, PATH_POLL_S):
        raise StepError(
            f"{path} did not appear within {within_s:g}s: check what should create it, or raise `within_s`"
        )
    ctx.progress(100.0, f"{path} is present")


def _sleep_until(
    duration_s: float, done: Callable[[], bool], report: Callable[[float], None], poll_s: float
) -> bool:
    """Sleep in steps of at most `poll_s` until `done()` or `duration_s` passed, reporting the time waited
    every PROGRESS_EVERY_S. True when `done()` came first."""
    start = time.monotonic()
    deadline = start + duration_s
    next_report = start + PROGRESS_EVERY_S
    while not done():
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_report:
            report(now - start)
            next_report = now + PROGRESS_EVERY_S
        time.sleep(min(poll_s, deadline - now, next_report - now))
    return True

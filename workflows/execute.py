"""Run one resource through its provider: observe, then apply only the difference."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from common.models import Change, Mode
from workflows.context import StepContext
from workflows.registry import Provider, Registry, StepError


class Outcome(BaseModel):
    """What running a step did: the change observed, and whether anything on the host changed."""

    change: Change
    changed: bool


def execute(registry: Registry, kind: str, spec: dict[str, Any], mode: Mode, ctx: StepContext) -> Outcome:
    """Check the resource and, in `apply` mode, apply what differs. Raises StepError on failure."""
    provider: Provider[Any] | None = registry.get(kind)
    if provider is None:
        raise StepError(f"no provider for kind {kind!r} on this agent", retryable=False)
    try:
        parsed = provider.parse(spec)
    except ValidationError as exc:
        raise StepError(f"invalid spec for {kind}: {exc}", retryable=False) from exc
    change = provider.check(parsed, ctx)
    if mode == "check":
        return Outcome(change=change, changed=False)
    if change.action == "none":
        if provider.gate:
            provider.apply(parsed, change, ctx)
        return Outcome(change=change, changed=False)
    provider.apply(parsed, change, ctx)
    return Outcome(change=change, changed=True)

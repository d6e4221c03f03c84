"""Helpers for users writing their own resource kinds: run a provider in-process, as an agent would.

For example `outcome, ctx = run_resource("file", {"path": "/tmp/a", "content": "hi"})`, then assert on
`outcome.changed`, `outcome.change.diff` and the progress calls in `ctx.reports`.
"""

from __future__ import annotations

from typing import Any

from common.models import Mode
from workflows.context import NullContext
from workflows.execute import Outcome, execute
from workflows.registry import Provider, Registry, default_registry


def run_resource(
    kind: str, spec: dict[str, Any], *, mode: Mode = "apply", registry: Registry | None = None
) -> tuple[Outcome, NullContext]:
    """Run one resource as an agent would (check, then apply what differs) on this host.

    Uses the built-in kinds unless `registry` is given (register your provider in one to test it).
    Returns the outcome and the context, whose `reports` and `lines` hold the progress and log calls.
    Raises StepError as the agent would see it, including for an invalid spec.
    """
    ctx = NullContext()
    outcome = execute(registry if registry is not None else default_registry(), kind, spec, mode, ctx)
    return outcome, ctx


def registry_with(*providers: Provider[Any]) -> Registry:
    """The built-in kinds and `providers`: a registry to pass to run_resource for testing your own kind
    before it is installed (installed packages' kinds are left out, so that a test sees only yours)."""
    registry = default_registry(packages=False)
    for provider in providers:
        registry.register(provider)
    return registry

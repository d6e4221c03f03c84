"""Resource kinds are found by name, so that an extension can replace any of them in whole or in part."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from common.models import Change
from workflows.context import StepContext

S = TypeVar("S", bound=BaseModel)


class StepError(Exception):
    """A step failed. `retryable` is False for errors a retry cannot fix (bad spec, permission denied)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Provider(Generic[S]):
    """The implementation of one resource kind.

    `check` observes the host and says what `apply` would do, changing nothing; `apply` makes only that
    change. Both must be safe to run any number of times.
    """

    kind: ClassVar[str]
    spec_model: ClassVar[type[BaseModel]]
    # A kind that always runs on one role (say, the engine-local agent) names it; others need `role:`.
    default_role: ClassVar[str | None] = None
    # A gate changes nothing on the host but must run every time (a wait): `apply` is called even when
    # `check` finds nothing to change, and the step still reports `changed: false`.
    gate: ClassVar[bool] = False
    # How plan and a finished step word the `create` action: a command creates nothing, it runs. The
    # action itself stays `create` (plan --json's values are part of the command line's contract).
    create_words: ClassVar[tuple[str, str]] = ("create", "created")

    def parse(self, spec: dict[str, Any]) -> S:
        return self.spec_model.model_validate(spec)  # type: ignore[return-value]

    def check(self, spec: S, ctx: StepContext) -> Change:
        raise NotImplementedError

    def apply(self, spec: S, change: Change, ctx: StepContext) -> None:
        raise NotImplementedError


class Registry:
    """Providers by kind name. Later registrations replace earlier ones (extensions load last)."""

    def __init__(self) -> None:
        self._providers: dict[str, Provider[Any]] = {}
        self.overridden: list[str] = []

    def register(self, provider: Provider[Any]) -> None:
        if provider.kind in self._providers:
            self.overridden.append(provider.kind)
        self._providers[provider.kind] = provider

    def get(self, kind: str) -> Provider[Any] | None:
        return self._providers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._providers)


def action_word(registry: Registry, resource: str, action: str, *, done: bool = False) -> str:
    """How `action` on `resource` (`kind/name`) reads to an operator: plan's "create" or "run", and with
    `done` a finished step's "created" or "ran"."""
    provider = registry.get(resource.partition("/")[0])
    if action == "create" and provider is not None:
        return provider.create_words[done]
    return f"{action}d" if done else action


def default_registry() -> Registry:
    """A registry holding the built-in kinds: file, directory, command, wait_for."""
    from workflows.kinds import builtin_providers

    registry = Registry()
    for provider in builtin_providers():
        registry.register(provider)
    return registry

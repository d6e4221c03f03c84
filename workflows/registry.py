"""Resource kinds are found by name, so that an extension can replace any of them in whole or in part."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from common.models import Change
from workflows.context import StepContext

S = TypeVar("S", bound=BaseModel)
log = logging.getLogger("converge.registry")

ENTRY_POINT_GROUP = "converge.providers"
"""The entry-point group through which an installed package adds resource kinds (docs/writing-a-kind.md)."""


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

    def identity(self, spec: S) -> str | None:
        """What on a host this resource manages (`path:/srv/www`, `package:nginx`), or None.

        Two resources with one identity that can land on the same host fight each other, so the loader
        refuses them (docs/file-format.md, "Conflicts"). Kinds that share a namespace (file and directory
        both own paths) return the same prefix.
        """
        return None

    def check(self, spec: S, ctx: StepContext) -> Change:
        raise NotImplementedError

    def apply(self, spec: S, change: Change, ctx: StepContext) -> None:
        raise NotImplementedError


class Registry:
    """Providers by kind name, and validators by name. Later registrations replace earlier ones
    (extensions load last). `problems` says which kinds from packages could not be added, and why."""

    def __init__(self) -> None:
        self._providers: dict[str, Provider[Any]] = {}
        self._validators: dict[str, Callable[..., Any]] = {}
        self.overridden: list[str] = []
        self.problems: list[str] = []

    def register(self, provider: Provider[Any]) -> None:
        if provider.kind in self._providers:
            self.overridden.append(provider.kind)
        self._providers[provider.kind] = provider

    def get(self, kind: str) -> Provider[Any] | None:
        return self._providers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._providers)

    def register_validator(self, name: str, fn: Callable[..., Any]) -> None:
        if name in self._validators:
            self.overridden.append(name)
        self._validators[name] = fn

    def validator(self, name: str) -> Callable[..., Any]:
        """The validator registered as `name`. KeyError names the known ones."""
        if name not in self._validators:
            raise KeyError(f"no validator {name!r} (known: {', '.join(self.validators())})")
        return self._validators[name]

    def validators(self) -> list[str]:
        return sorted(self._validators)


def action_word(registry: Registry, resource: str, action: str, *, done: bool = False) -> str:
    """How `action` on `resource` (`kind/name`) reads to an operator: plan's "create" or "run", and with
    `done` a finished step's "created" or "ran"."""
    provider = registry.get(resource.partition("/")[0])
    if action == "create" and provider is not None:
        return provider.create_words[done]
    return f"{action}d" if done else action


def default_registry(*, packages: bool = True) -> Registry:
    """A registry holding the built-in kinds (file, directory, command, wait_for), the built-in validators
    (the capability test) and, with `packages`, the kinds installed packages add (`converge.providers`)."""
    from workflows.capabilities import CAPABILITY_TEST, strict_test
    from workflows.kinds import builtin_providers

    registry = Registry()
    for provider in builtin_providers():
        registry.register(provider)
    registry.register_validator(CAPABILITY_TEST, strict_test)
    if packages:
        add_package_kinds(registry, entry_points(group=ENTRY_POINT_GROUP))
    return registry


def add_package_kinds(registry: Registry, found: Iterable[EntryPoint]) -> None:
    """Register the provider each entry point names (a Provider subclass or instance). One that cannot be
    loaded, is not a provider, or takes a kind already registered is skipped and noted in `problems`: the
    built-ins and the other packages' kinds still work, and an extension (not a package) replaces a kind."""
    for point in sorted(found, key=lambda p: p.name):
        where = f"entry point {point.name!r} ({point.value}) of {_distribution(point)}"
        try:
            provider = _provider_of(point.load())
        except Exception as exc:  # a package's bug must not take the built-ins down with it
            problem = f"{where}: cannot load it: {type(exc).__name__}: {exc}"
        else:
            if provider is None:
                problem = f"{where}: not a converge Provider subclass or instance"
            elif registry.get(provider.kind) is not None:
                taken = provider.kind
                problem = f"{where}: kind {taken!r} is already registered; an extension can replace it"
            else:
                registry.register(provider)
                continue
        log.warning("%s; skipped", problem)
        registry.problems.append(problem)


def _provider_of(obj: object) -> Provider[Any] | None:
    if isinstance(obj, type) and issubclass(obj, Provider):
        obj = obj()
    if isinstance(obj, Provider) and isinstance(getattr(obj, "kind", None), str):
        return obj
    return None


def _distribution(point: EntryPoint) -> str:
    dist = point.dist
    return f"package {dist.name} {dist.version}" if dist is not None else "an unknown package"

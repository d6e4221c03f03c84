"""Kinds from installed packages (`converge.providers` entry points): added after the built-ins, and one
that cannot be used is skipped with a problem that names it."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from pydantic import BaseModel

from common.models import Change
from workflows.context import StepContext
from workflows.registry import ENTRY_POINT_GROUP, Provider, add_package_kinds, default_registry


class MarkerSpec(BaseModel):
    path: str


class MarkerProvider(Provider[MarkerSpec]):
    kind = "marker"
    spec_model = MarkerSpec

    def check(self, spec: MarkerSpec, ctx: StepContext) -> Change:
        return Change(action="none")


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


class_of_a_test_kind = "tests.unit.test_package_kinds:MarkerProvider"


def test_a_provider_class_from_a_package_is_registered_after_the_built_ins() -> None:
    registry = default_registry(packages=False)
    add_package_kinds(registry, [point("marker", class_of_a_test_kind)])
    assert registry.kinds() == [
        "catalog",
        "command",
        "directory",
        "file",
        "group",
        "machine_import",
        "marker",
        "package",
        "user",
        "wait_for",
    ]
    assert registry.problems == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not_a_module_anywhere:Thing", "cannot load it: ModuleNotFoundError"),
        ("json:loads", "not a converge Provider subclass or instance"),
        (
            "workflows.kinds.file:FileProvider",
            "kind 'file' is already registered; an extension can replace it",
        ),
    ],
)
def test_a_package_kind_that_cannot_be_used_is_skipped_and_named(value: str, problem: str) -> None:
    registry = default_registry(packages=False)
    add_package_kinds(registry, [point("broken", value), point("marker", class_of_a_test_kind)])
    assert "marker" in registry.kinds()  # the others still load
    assert len(registry.problems) == 1
    assert registry.problems[0].startswith(f"entry point 'broken' ({value}) of an unknown package: {problem}")
    assert registry.get("file").__class__.__name__ == "FileProvider"  # type: ignore[union-attr]

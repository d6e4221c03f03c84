"""Two resources that manage the same thing on a host they can share are refused, naming both."""

from __future__ import annotations

import pytest

from workflows.registry import default_registry
from workflows.spec import SpecError, load_text

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: t}\nresources:\n"


def problems(body: str) -> list[str]:
    try:
        load_text(HEADER + body, "estate.yaml", default_registry())
    except SpecError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def test_file_and_directory_on_one_normalized_path_conflict_naming_both_lines() -> None:
    found = problems(
        "  - {kind: directory, name: a, role: web, spec: {path: /srv/www}}\n"
        "  - {kind: file, name: b, role: web, spec: {path: /srv//www/, content: x}}\n"
    )
    assert found == [
        "estate.yaml:6: resources[1]: conflict: file/b and directory/a (estate.yaml:5, resources[0]) both "
        "manage path /srv/www on role web: keep one, or give them different roles or agents (scope)"
    ]


@pytest.mark.parametrize(
    "kind, spec",
    [("package", "{name: nginx}"), ("user", "{name: bob}"), ("group", "{name: staff}")],
)
def test_same_package_user_or_group_twice_conflicts(kind: str, spec: str) -> None:
    found = problems(
        f"  - {{kind: {kind}, name: a, role: web, spec: {spec}}}\n"
        f"  - {{kind: {kind}, name: b, role: web, scope: each, spec: {spec}}}\n"
    )
    assert len(found) == 1 and f"{kind}/b and {kind}/a" in found[0]


def test_different_roles_or_different_agents_do_not_conflict() -> None:
    assert not problems(
        "  - {kind: file, name: a, role: web, spec: {path: /srv/x, content: x}}\n"
        "  - {kind: file, name: b, role: db, spec: {path: /srv/x, content: x}}\n"
        "  - {kind: file, name: c, role: web, scope: web-01, spec: {path: /srv/y, content: x}}\n"
        "  - {kind: file, name: d, role: web, scope: web-02, spec: {path: /srv/y, content: x}}\n"
    )


def test_a_pinned_agent_overlaps_the_role_without_a_scope() -> None:
    found = problems(
        "  - {kind: file, name: a, role: web, spec: {path: /srv/x, content: x}}\n"
        "  - {kind: file, name: b, role: web, scope: web-01, spec: {path: /srv/x, content: y}}\n"
    )
    assert len(found) == 1 and "file/b and file/a" in found[0]

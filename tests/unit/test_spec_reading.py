"""Reading a desired state resource by resource: the same values and lines as reading it whole, in linear time,
with no process-wide switch flipped; and what YAML lets through that no field takes (!!binary, surrogates)."""

from __future__ import annotations

import gc
import threading

import pytest

from workflows.registry import Registry, default_registry
from workflows.spec import DesiredState, Problem, SpecError, load_text

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: reading}\n"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


def problems(text: str, registry: Registry) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load_text(text, "estate.yaml", registry)
    return caught.value.problems


def directories(n: int) -> str:
    items = [f"  - {{kind: directory, name: d{i}, role: web, spec: {{path: /srv/d{i}}}}}" for i in range(n)]
    return HEADER + "resources:\n" + "\n".join(items) + "\n"


def test_binary_content_is_a_field_error_with_its_line(registry: Registry) -> None:
    text = HEADER + "resources:\n  - kind: file\n    name: a\n    role: web\n    spec:\n"
    text += "      path: /tmp/a\n      content: !!binary aGVsbG8=\n"

    (problem,) = problems(text, registry)

    assert (problem.line, problem.field) == (10, "resources[0].spec.content")
    assert "!!binary" in problem.message and "write the value as text" in problem.message


def test_binary_inside_a_merged_mapping_is_found_too(registry: Registry) -> None:
    text = HEADER + "resources:\n  - kind: file\n    name: a\n    role: web\n"
    text += "    spec: {<<: {content: !!binary aGVsbG8=}, path: /tmp/a}\n"

    (problem,) = problems(text, registry)

    assert (problem.line, problem.field) == (8, "resources[0].spec.content")


def test_a_lone_surrogate_in_sent_text_is_refused_with_its_line(registry: Registry) -> None:
    (problem,) = problems(HEADER + "resources: []\n# \ud800\n", registry)
    assert problem.line == 5 and "surrogate (U+D800)" in problem.message


def test_an_anchor_in_one_resource_serves_an_alias_in_a_later_one(registry: Registry) -> None:
    text = HEADER + "resources:\n  - {kind: directory, name: a, role: web, spec: &spec {path: /tmp/a}}\n"
    text += "  - {kind: directory, name: b, role: db, spec: *spec}\n"

    state = load_text(text, "estate.yaml", registry)

    assert [r.spec for r in state.resources] == [{"path": "/tmp/a"}, {"path": "/tmp/a"}]


def test_merge_keys_work_within_resources_and_at_the_top_level(registry: Registry) -> None:
    text = "<<: {apiVersion: converge/v1, kind: DesiredState}\nmetadata: {name: merged}\nresources:\n"
    text += "  - &dir {kind: directory, name: a, role: web, spec: {path: /tmp/a}}\n"
    text += "  - {<<: *dir, name: b, role: db}\n"

    state = load_text(text, "estate.yaml", registry)

    assert state.metadata.name == "merged"
    assert [(r.ref, r.spec) for r in state.resources] == [
        ("directory/a", {"path": "/tmp/a"}),
        ("directory/b", {"path": "/tmp/a"}),
    ]


def test_problems_deep_in_later_resources_have_their_own_lines(registry: Registry) -> None:
    text = (
        directories(50)
        + "  - kind: directory\n    name: late\n    role: web\n    spec:\n      path: relative\n"
    )

    (problem,) = problems(text, registry)

    assert (problem.line, problem.field) == (59, "resources[50].spec.path")


def test_a_key_given_twice_in_a_resource_names_both_lines(registry: Registry) -> None:
    text = HEADER + "resources:\n  - kind: directory\n    name: a\n    name: b\n    role: web\n"
    text += "    spec: {path: /tmp/a}\n"

    (problem,) = problems(text, registry)

    assert problem.line == 7 and "first at line 6" in problem.message


def test_two_documents_are_refused(registry: Registry) -> None:
    (problem,) = problems(HEADER + "resources: []\n---\nmore: 1\n", registry)
    assert "single document" in problem.message and problem.line == 5


def test_loading_leaves_the_garbage_collector_alone(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    switched: list[str] = []
    monkeypatch.setattr(gc, "disable", lambda: switched.append("disable"))
    monkeypatch.setattr(gc, "enable", lambda: switched.append("enable"))
    monkeypatch.setattr(gc, "freeze", lambda: switched.append("freeze"))

    load_text(directories(2000), "estate.yaml", registry)

    assert switched == [] and gc.isenabled()


def test_loads_from_many_threads_at_once_agree(registry: Registry) -> None:
    text = directories(2000)
    results: list[DesiredState] = []

    def load() -> None:
        results.append(load_text(text, "estate.yaml", registry))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4 and all(r == results[0] for r in results)


def test_loading_never_touches_the_process_wide_garbage_collector(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    switched: list[str] = []
    monkeypatch.setattr(gc, "disable", lambda: switched.append("disable"))
    monkeypatch.setattr(gc, "enable", lambda: switched.append("enable"))

    load_text(directories(2000), "estate.yaml", registry)

    # Linear growth itself is measured by the planning benchmark (tests/bench), not by a timed test.
    assert switched == [] and gc.isenabled()

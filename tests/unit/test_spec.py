"""The desired-state loader: every problem is reported, each naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from common.errors import BadInput
from workflows.registry import Provider, Registry
from workflows.spec import DesiredState, Problem, SpecError, load_file, load_text


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    content: str = ""


class WaitSpec(BaseModel):
    seconds: float


class FakeFile(Provider[FileSpec]):
    kind = "file"
    spec_model = FileSpec


class FakeWait(Provider[WaitSpec]):
    kind = "wait_for"
    spec_model = WaitSpec
    default_role = "engine"


HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata:\n  name: estate\nresources:\n"


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register(FakeFile())
    registry.register(FakeWait())
    return registry


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "estate.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, registry: Registry, text: str | bytes) -> list[Problem]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_file(path, registry)
    for problem in caught.value.problems:
        assert problem.file == str(path)
        assert str(problem) in str(caught.value)
    return caught.value.problems


def only_problem(tmp_path: Path, registry: Registry, text: str | bytes) -> Problem:
    problems = problems_of(tmp_path, registry, text)
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_file_with_dependencies_loads(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - kind: file\n"
        "    name: a\n"
        "    role: web\n"
        "    scope: web-01\n"
        "    timeout_s: 60\n"
        "    retry: {attempts: 5}\n"
        "    credentials: [site-admin]\n"
        "    spec: {path: /srv/a}\n"
        "  - kind: file\n"
        "    name: b\n"
        "    role: web\n"
        "    depends_on: [file/a]\n"
        "    spec: {path: /srv/b, content: hi}\n"
    )
    state = load_file(write(tmp_path, text), registry)
    assert isinstance(state, DesiredState)
    assert state.api_version == "converge/v1"
    assert state.metadata.name == "estate"
    assert [resource.ref for resource in state.resources] == ["file/a", "file/b"]
    first, second = state.resources
    assert (first.scope, first.timeout_s, first.credentials) == ("web-01", 60, ["site-admin"])
    assert first.retry is not None and (first.retry.attempts, first.retry.backoff_s) == (5, 2.0)
    assert second.depends_on == ["file/a"]
    assert second.spec == {"path": "/srv/b", "content": "hi"}


def test_default_role_of_the_kind_is_filled_in(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - {kind: wait_for, name: settle, spec: {seconds: 1}}\n"
    state = load_file(write(tmp_path, text), registry)
    assert state.resources[0].role == "engine"


def test_text_loads_without_a_file(registry: Registry) -> None:
    state = load_text(HEADER + "  []\n", "inline.yaml", registry)
    assert state.resources == []


def test_problems_carry_the_line_of_the_field(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - kind: file\n"  # line 6
        "    name: a\n"
        "    role: web\n"
        "    spec:\n"
        "      path: 42\n"  # line 10
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (10, "resources[0].spec.path")
    assert str(problem).startswith(f"{tmp_path / 'estate.yaml'}:10: resources[0].spec.path: ")


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - {kind: fiel, name: a, role: web}\n"  # line 6
        "  - {kind: file, name: b, role: web, spec: {}}\n"  # line 7
        "  - {kind: file, name: c, role: web, spec: {path: /c}, timeout_s: -1}\n"  # line 8
    )
    found = {(problem.line, problem.field) for problem in problems_of(tmp_path, registry, text)}
    assert found == {
        (6, "resources[0].kind"),
        (7, "resources[1].spec.path"),
        (8, "resources[2].timeout_s"),
    }


def test_file_that_is_not_utf8_is_refused_with_the_line_of_the_bad_byte(
    tmp_path: Path, registry: Registry
) -> None:
    text = HEADER.encode() + b"  - {kind: file, name: caf\xe9, role: web, spec: {path: /x}}\n"
    problem = only_problem(tmp_path, registry, text)
    assert problem.line == 6
    assert "not UTF-8" in problem.message and "save it as UTF-8" in problem.message


def test_missing_file_says_it_cannot_be_read(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(SpecError) as caught:
        load_file(path, registry)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert "cannot read the file" in problem.message and "No such file" in problem.message


def test_spec_error_is_bad_input(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(BadInput) as caught:
        load_file(tmp_path / "absent.yaml", registry)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text", ["", "\n\n   \n", "# nothing here\n# yet\n"])
def test_empty_file_is_refused(tmp_path: Path, registry: Registry, text: str) -> None:
    problem = only_problem(tmp_path, registry, text)
    assert problem.line == 1
    assert "file is empty" in problem.message


def test_yaml_syntax_error_names_its_line(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - kind: file\n    name: [a\n    role: web\n"
    problem = only_problem(tmp_path, registry, text)
    assert problem.line is not None and problem.line >= 7
    assert "invalid YAML" in problem.message and "fix the syntax" in problem.message


def test_tab_indentation_is_a_syntax_error_on_its_line(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER + "  - kind: file\n\tname: a\n")
    assert problem.line == 7
    assert "invalid YAML" in problem.message


def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, "# estate\n- kind: file\n- kind: directory\n")
    assert (problem.line, problem.field) == (2, "")
    assert "top level must be a mapping" in problem.message and "got a list" in problem.message


def test_wrong_api_version_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = HEADER.replace("converge/v1", "converge/v2") + "  []\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (1, "apiVersion")
    assert problem.message == "input should be converge/v1, got converge/v2: fix the value"


def test_wrong_kind_of_document_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = HEADER.replace("kind: DesiredState", "kind: Estate") + "  []\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (2, "kind")
    assert problem.message == "input should be DesiredState, got Estate: fix the value"


def test_missing_metadata_name_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = "apiVersion: converge/v1\nkind: DesiredState\nmetadata:\n  owner: ops\nresources: []\n"
    found = {(p.line, p.field, p.message) for p in problems_of(tmp_path, registry, text)}
    assert (3, "metadata.name", "is required but missing: add `name: <estate name>` under metadata") in found
    assert any(field == "metadata.owner" and line == 4 for line, field, _ in found)


def test_missing_resources_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: estate}\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (None, "resources")
    assert "add `resources:`" in problem.message


def test_resources_that_are_not_a_list_are_refused(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER.replace("resources:\n", "resources: {a: 1}\n"))
    assert (problem.line, problem.field) == (5, "resources")
    assert "must be a list" in problem.message


def test_resource_that_is_not_a_mapping_is_refused(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER + "  - file/a\n")
    assert (problem.line, problem.field) == (6, "resources[0]")
    assert "must be a mapping" in problem.message


def test_unknown_kind_lists_the_known_kinds(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER + "  - {kind: fiel, name: a, role: web}\n")
    assert (problem.line, problem.field) == (6, "resources[0].kind")
    assert "unknown kind `fiel`" in problem.message
    assert "did you mean `file`?" in problem.message and "file, wait_for" in problem.message


def test_missing_spec_field_points_at_the_resource(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - kind: file\n    name: a\n    role: web\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (6, "resources[0].spec.path")
    assert "required but missing" in problem.message


def test_wrong_typed_spec_field_points_at_its_key(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - kind: wait_for\n    name: w\n    spec:\n      seconds: soon\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (9, "resources[0].spec.seconds")
    assert "valid number" in problem.message and "got soon:" in problem.message


def test_unknown_spec_key_is_refused_with_a_suggestion(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - kind: file\n    name: a\n    role: web\n    spec:\n      path: /a\n      contnt: x\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (11, "resources[0].spec.contnt")
    assert "did you mean `content`?" in problem.message


def test_missing_role_is_refused_when_the_kind_has_no_default(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER + "  - kind: file\n    name: a\n    spec: {path: /a}\n")
    assert (problem.line, problem.field) == (6, "resources[0].role")
    assert "no default role" in problem.message and "add `role:" in problem.message


@pytest.mark.parametrize("key", ["role", "scope"])
def test_role_or_scope_that_is_not_a_queue_safe_name_is_refused(
    tmp_path: Path, registry: Registry, key: str
) -> None:
    text = HEADER + f"  - kind: wait_for\n    name: w\n    {key}: 'web servers'\n    spec: {{seconds: 1}}\n"
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (8, f"resources[0].{key}")
    assert '"web servers" is not a valid name' in problem.message


def test_scope_each_is_accepted_without_knowing_any_agent(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - {kind: file, name: motd, role: web, scope: each, spec: {path: /etc/motd}}\n"

    (resource,) = load_file(write(tmp_path, text), registry).resources

    assert (resource.role, resource.scope) == ("web", "each")


def test_a_scope_that_is_neither_an_agent_id_nor_each_names_both_forms(
    tmp_path: Path, registry: Registry
) -> None:
    text = HEADER + "  - {kind: file, name: motd, role: web, scope: '*', spec: {path: /etc/motd}}\n"

    problem = only_problem(tmp_path, registry, text)

    assert (problem.line, problem.field) == (6, "resources[0].scope")
    assert '"*" is not a valid name' in problem.message and "`each` for every live agent" in problem.message


def test_duplicate_resource_names_both_lines(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - {kind: file, name: a, role: web, spec: {path: /a}}\n"  # line 6
        "  - {kind: file, name: b, role: web, spec: {path: /b}}\n"
        "  - {kind: file, name: a, role: web, spec: {path: /a2}}\n"  # line 8
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (8, "resources[2]")
    assert "duplicate resource file/a" in problem.message and "line 6" in problem.message


def test_dependency_that_is_not_kind_slash_name_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = (
        HEADER + "  - kind: file\n    name: a\n    role: web\n    depends_on: [index]\n    spec: {path: /a}\n"
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (9, "resources[0].depends_on[0]")
    assert "`index` is not a resource reference" in problem.message and "kind/name" in problem.message


def test_dependency_on_a_missing_resource_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - kind: file\n    name: a\n    role: web\n    depends_on:\n      - file/b\n    spec: {path: /a}\n"
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (10, "resources[0].depends_on[0]")
    assert "`file/b` does not exist" in problem.message


def test_dependency_cycle_is_named(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - {kind: file, name: a, role: web, depends_on: [file/b], spec: {path: /a}}\n"
        "  - {kind: file, name: b, role: web, depends_on: [file/c], spec: {path: /b}}\n"
        "  - {kind: file, name: c, role: web, depends_on: [file/a], spec: {path: /c}}\n"  # line 8
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (8, "resources[2].depends_on[0]")
    assert "dependency cycle file/a -> file/b -> file/c -> file/a" in problem.message


def test_each_cycle_is_reported_once(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + (
        "  - {kind: file, name: a, role: web, depends_on: [file/a], spec: {path: /a}}\n"
        "  - {kind: file, name: b, role: web, depends_on: [file/c], spec: {path: /b}}\n"
        "  - {kind: file, name: c, role: web, depends_on: [file/b, file/b], spec: {path: /c}}\n"
        "  - {kind: file, name: d, role: web, depends_on: [file/b, file/a], spec: {path: /d}}\n"
    )
    messages = sorted(problem.message for problem in problems_of(tmp_path, registry, text))
    assert len(messages) == 2
    assert "file/a -> file/a" in messages[0]
    assert "file/b -> file/c -> file/b" in messages[1]


def test_unknown_top_level_key_is_refused(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, "metdata: {}\n" + HEADER + "  []\n")
    assert (problem.line, problem.field) == (1, "metdata")
    assert "unknown key" in problem.message and "did you mean `metadata`?" in problem.message


def test_unknown_resource_key_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = (
        HEADER + "  - kind: file\n    name: a\n    role: web\n    dependson: [file/b]\n    spec: {path: /a}\n"
    )
    problem = only_problem(tmp_path, registry, text)
    assert (problem.line, problem.field) == (9, "resources[0].dependson")
    assert "did you mean `depends_on`?" in problem.message


def test_key_repeated_in_a_mapping_is_refused(tmp_path: Path, registry: Registry) -> None:
    text = HEADER + "  - kind: file\n    name: a\n    role: web\n    spec: {path: /a}\n    spec: {path: /b}\n"
    problem = only_problem(tmp_path, registry, text)
    assert problem.line == 10
    assert "key `spec` appears twice" in problem.message and "line 9" in problem.message


def test_control_character_is_refused_with_its_line(tmp_path: Path, registry: Registry) -> None:
    problem = only_problem(tmp_path, registry, HEADER + "  []\n\x00\n")
    assert problem.line == 7
    assert "not allowed in YAML" in problem.message


def test_problems_are_listed_in_file_order(tmp_path: Path, registry: Registry) -> None:
    text = (
        "apiVersion: v0\n"
        + HEADER.split("\n", 1)[1]
        + "  - {kind: nope, name: a}\n  - {kind: nope, name: a}\n"
    )
    lines = [problem.line or 0 for problem in problems_of(tmp_path, registry, text)]
    assert lines == sorted(lines)

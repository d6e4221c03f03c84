"""Problems in a desired-state file say each thing once, with values as the file wrote them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.runner import _summary_of
from common.models import Action, Change, CheckResult, StepMessage
from engine.render import plan_summary
from workflows.registry import Registry, action_word, default_registry
from workflows.shown import named, shown
from workflows.spec import Problem, SpecError, load_file

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: m}\nresources:\n"


def problems(tmp_path: Path, *resources: str) -> list[Problem]:
    path = tmp_path / "estate.yaml"
    path.write_text(HEADER + "".join(f"  - {r}\n" for r in resources))
    with pytest.raises(SpecError) as caught:
        load_file(path, default_registry())
    return caught.value.problems


def only_message(tmp_path: Path, resource: str) -> str:
    [problem] = problems(tmp_path, resource)
    return problem.message


def test_a_relative_path_is_named_once(tmp_path: Path) -> None:
    message = only_message(tmp_path, "{kind: file, name: f, role: web, spec: {path: www/x.html, content: x}}")
    assert message == "must be an absolute path, got www/x.html: write it from /"
    assert message.count("www/x.html") == 1 and "Value error" not in message


def test_a_path_that_climbs_out_is_named_once(tmp_path: Path) -> None:
    message = only_message(tmp_path, "{kind: directory, name: d, role: web, spec: {path: /a/../b}}")
    assert message.count("/a/../b") == 1 and message.endswith("write the path it leads to")


def test_a_wrong_value_is_shown_as_yaml_not_as_python(tmp_path: Path) -> None:
    message = only_message(
        tmp_path, "{kind: file, name: f, role: web, spec: {path: /f, content: {a: 1, b: [x, true]}}}"
    )
    assert message == "input should be a valid string, got {a: 1, b: [x, true]}: fix the value"


def test_a_long_value_is_cut(tmp_path: Path) -> None:
    message = only_message(tmp_path, f"{{kind: file, name: f, role: web, spec: {'x' * 500}}}")
    assert message.startswith("input should be a mapping, got xxx") and "...: fix the value" in message
    assert len(message) < 120


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("0644", 'mode 420 is the number YAML reads from 0644 without quotes; write mode: "0644"'),
        ("0755", 'mode 493 is the number YAML reads from 0755 without quotes; write mode: "0755"'),
        ("644", 'mode 644 is a number, not a quoted octal string; write mode: "0644"'),
    ],
)
def test_an_unquoted_mode_says_what_yaml_read_and_what_to_write(
    tmp_path: Path, written: str, hint: str
) -> None:
    message = only_message(
        tmp_path, f"{{kind: file, name: f, role: web, spec: {{path: /f, content: x, mode: {written}}}}}"
    )
    assert message == hint


def test_a_quoted_mode_that_is_not_octal_is_shown_quoted(tmp_path: Path) -> None:
    message = only_message(tmp_path, '{kind: directory, name: d, role: web, spec: {path: /d, mode: "999"}}')
    assert message == 'must be octal permission bits like "0644" or "0755", got "999"'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("www/x.html", "www/x.html"),
        ("0644", '"0644"'),  # plain, YAML would read a number
        ("yes", '"yes"'),
        ("two words", '"two words"'),
        (None, "null"),
        (False, "false"),
        ({"a": 1}, "{a: 1}"),
        (list(range(9)), "[0, 1, 2, 3, ...]"),
        ({"x": {"y": {"z": 1}}}, "{x: {y: {...}}}"),
    ],
)
def test_values_are_shown_as_the_file_would_write_them(value: object, text: str) -> None:
    assert shown(value) == text


def test_a_shown_value_never_passes_its_limit() -> None:
    assert len(shown("a b " * 100)) <= 60 and shown("a b " * 100).endswith('..."')
    assert len(shown({str(i): "v" * 80 for i in range(10)})) <= 60


def test_keys_and_references_are_named_in_backticks() -> None:
    assert named("file/index") == "`file/index`" and named("two words") == '"two words"'


def test_a_command_runs_where_other_kinds_create() -> None:
    registry: Registry = default_registry()
    assert action_word(registry, "command/migrate", "create") == "run"
    assert action_word(registry, "command/migrate", "create", done=True) == "ran"
    assert action_word(registry, "file/index", "create", done=True) == "created"
    assert action_word(registry, "file/index", "update", done=True) == "updated"
    assert action_word(registry, "nosuch/x", "create") == "create"


def test_plan_counts_commands_to_run_apart_from_resources_to_create() -> None:
    def result(resource: str, action: Action) -> CheckResult:
        return CheckResult(step_id="w.0", resource=resource, agent="a", change=Change(action=action))

    results = [result("file/index", "create"), result("command/migrate", "create"), result("file/x", "none")]
    assert plan_summary(results) == "1 to create, 1 to run, 0 to change, 1 unchanged"
    assert plan_summary(results[:1]) == "1 to create, 0 to change, 0 unchanged"


def test_a_finished_command_step_says_it_ran() -> None:
    message = StepMessage.model_validate(
        {"workflow_id": "w", "step_id": "w.0", "resource": "command/migrate", "kind": "command"}
        | {"name": "migrate", "role": "web", "spec": {}}
    )
    assert _summary_of(default_registry(), message, Change(action="create")) == "ran"


def test_yaml_anchor_and_alias_problems_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(HEADER.replace("{name: m}", "&a {name: m}") + "  - &a {kind: file, name: f, spec: *b}\n")
    with pytest.raises(SpecError) as caught:
        load_file(path, default_registry())
    [problem] = caught.value.problems
    assert problem.message == "invalid YAML: anchor &a is defined twice (first at line 3): fix the syntax"


def test_every_doc_a_message_points_at_is_in_docs() -> None:
    root = Path(__file__).resolve().parents[2]
    sources = [
        p for package in ("common", "engine", "agents", "workflows") for p in (root / package).rglob("*.py")
    ]
    pointed = {m for p in sources for m in re.findall(r"docs/[\w./-]+\.md", p.read_text())}
    assert pointed, "no message points at a doc any more: drop this test"
    assert not {doc for doc in pointed if not (root / doc).is_file()}

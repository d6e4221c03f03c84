"""A desired state in several files: one state, problems named by file and line, --limit's selection."""

from __future__ import annotations

import pytest

from common.errors import BadInput
from workflows.registry import default_registry
from workflows.sources import DesiredInput, SourceFile, load_input
from workflows.spec import SpecError, load_texts, select

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: many}\nresources:\n"
DIRS = HEADER + "  - {kind: directory, name: www, role: web, spec: {path: /srv/www}}\n"
FILES = (
    HEADER
    + "  - {kind: file, name: index, role: web, depends_on: [directory/www], spec: {path: /srv/www/i, content: x}}\n"
)
OTHER = HEADER + "  - {kind: directory, name: logs, role: web, spec: {path: /srv/logs}}\n"


def test_references_work_across_files() -> None:
    desired = load_texts([("a.yaml", DIRS), ("b.yaml", FILES)], default_registry())

    assert [r.ref for r in desired.resources] == ["directory/www", "file/index"]
    assert desired.metadata.name == "many"


def test_a_problem_names_its_own_file_and_line() -> None:
    broken = FILES.replace("directory/www", "directory/ghost")

    with pytest.raises(SpecError) as raised:
        load_texts([("a.yaml", DIRS), ("b.yaml", broken)], default_registry())

    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == ("b.yaml", 5, "resources[0].depends_on[0]")
    assert "does not exist in these files" in problem.message


def test_a_conflict_across_files_names_both_files() -> None:
    again = DIRS.replace("name: www", "name: www2")

    with pytest.raises(SpecError) as raised:
        load_texts([("a.yaml", DIRS), ("b.yaml", again)], default_registry())

    (problem,) = raised.value.problems
    assert problem.file == "b.yaml" and "(a.yaml:5, resources[0])" in problem.message


def test_files_must_name_one_estate() -> None:
    with pytest.raises(SpecError, match="give every file of the folder the same metadata"):
        load_texts([("a.yaml", DIRS), ("b.yaml", OTHER.replace("many", "few"))], default_registry())


def test_limit_keeps_the_targets_and_what_they_run_after() -> None:
    files = [SourceFile(filename=n, source=t) for n, t in [("a", DIRS), ("b", FILES), ("c", OTHER)]]

    desired = load_input(DesiredInput(files=files, limit=["file/index"]), default_registry())

    assert [r.ref for r in desired.resources] == ["directory/www", "file/index"]


def test_limit_naming_no_resource_offers_the_near_ones() -> None:
    desired = load_texts([("a.yaml", DIRS), ("b.yaml", FILES)], default_registry())

    with pytest.raises(BadInput, match="did you mean `file/index`"):
        select(desired, ["file/indx"])

"""docs/kinds.md is generated from the kinds' spec models: it fails here when a model changed without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows import docs
from workflows.kinds import builtin_providers
from workflows.registry import default_registry
from workflows.spec import load_text


def test_the_committed_kinds_doc_is_what_the_spec_models_render() -> None:
    committed = docs.DOC.read_text()

    assert committed == docs.render(), (
        "docs/kinds.md is out of date with the kinds' spec models: run `python -m workflows.docs --write`"
    )


def test_every_builtin_kind_has_a_section_an_example_and_a_description_of_each_field() -> None:
    for provider in builtin_providers():
        assert f"## `{provider.kind}`" in docs.DOC.read_text()
        assert provider.kind in docs.EXAMPLES, f"add an example of {provider.kind} to workflows.docs.EXAMPLES"
        undescribed = [n for n, f in provider.spec_model.model_fields.items() if not f.description]
        assert not undescribed, f"{provider.kind}: give these fields a Field(description=...): {undescribed}"


@pytest.mark.parametrize("kind", sorted(docs.EXAMPLES))
def test_each_example_is_a_valid_resource_of_its_kind(kind: str) -> None:
    resources = "\n".join("  " + line for line in docs.EXAMPLES[kind].splitlines())
    if kind == "user":  # its example depends on the group's
        resources += "\n" + "\n".join("  " + line for line in docs.EXAMPLES["group"].splitlines())
    text = (
        f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: example}}\nresources:\n{resources}\n"
    )

    desired = load_text(text, f"{kind}.yaml", default_registry())

    assert desired.resources[0].kind == kind


def test_the_generator_check_fails_on_a_stale_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "kinds.md"
    stale.write_text("# Resource kinds\n")
    monkeypatch.setattr(docs, "DOC", stale)

    assert docs.main(["--check"]) == 1
    assert docs.main(["--write"]) == 0
    assert docs.main(["--check"]) == 0

"""Whatever malformed document is thrown at the desired-state parser, it answers with BadInput (exit code 2)
and a message, never with another exception: generated YAML and JSON structures, wrong types, random
bytes and text, deep nesting."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import BadInput
from workflows.registry import default_registry
from workflows.spec import load_text

REGISTRY = default_registry()
# Deterministic in CI: the same examples on every run; no database of past failures to depend on.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["file", "directory", "command", "wait_for", "converge/v1", "DesiredState", "/tmp/x"]),
)
keys = st.one_of(
    st.sampled_from(
        [
            "apiVersion",
            "kind",
            "metadata",
            "name",
            "resources",
            "role",
            "scope",
            "spec",
            "path",
            "content",
            "mode",
            "run",
            "creates",
            "unless",
            "depends_on",
            "retry",
            "timeout_s",
        ]
    ),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


@st.composite
def near_misses(draw: st.DrawFn) -> dict[str, Any]:
    """A document shaped like a desired state, with any part replaced by something else."""
    resource = {
        "kind": draw(st.one_of(st.sampled_from(["file", "directory", "command", "wait_for"]), values)),
        "name": draw(st.one_of(st.text(max_size=10), values)),
        "role": draw(st.one_of(st.just("web"), values)),
        "spec": draw(st.one_of(st.dictionaries(keys, values, max_size=4), values)),
    }
    if draw(st.booleans()):
        resource["depends_on"] = draw(st.one_of(st.lists(st.text(max_size=12), max_size=3), values))
    document: dict[str, Any] = {
        "apiVersion": draw(st.one_of(st.just("converge/v1"), values)),
        "kind": draw(st.one_of(st.just("DesiredState"), values)),
        "metadata": draw(st.one_of(st.just({"name": "fuzz"}), values)),
        "resources": draw(st.one_of(st.lists(st.just(resource), max_size=3), values)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(document)), max_size=2, unique=True)):
        del document[key]
    return document


def refused_or_accepted(text: str | bytes) -> None:
    """The parser's only two answers: a DesiredState, or BadInput with a message."""
    try:
        load_text(text, "fuzz.yaml", REGISTRY)
    except BadInput as exc:
        assert str(exc).strip()


@FUZZ
@given(values)
def test_any_yaml_structure_gets_an_answer(document: Any) -> None:
    refused_or_accepted(yaml.safe_dump(document))


@FUZZ
@given(near_misses())
def test_near_miss_desired_states_in_yaml_or_json_get_an_answer(document: dict[str, Any]) -> None:
    refused_or_accepted(yaml.safe_dump(document))
    refused_or_accepted(json.dumps(document))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_get_an_answer(data: bytes) -> None:
    refused_or_accepted(data)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("[]{}:-,&*!|>'\"#%@`?\n\t abc01")), max_size=200))
def test_yaml_punctuation_soup_gets_an_answer(text: str) -> None:
    refused_or_accepted(text)


@FUZZ
@given(st.integers(min_value=1, max_value=5_000), st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_gets_an_answer(depth: int, opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    body = (
        opener * depth + "x" + closer * depth
        if opener != "- "
        else "".join("  " * level + "- \n" for level in range(depth))
    )
    refused_or_accepted(
        "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: deep}\nresources: []\nx: " + body
    )


@FUZZ
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=12))
def test_alias_fans_get_an_answer(fan: int, levels: int) -> None:
    lines = ["apiVersion: converge/v1", "kind: DesiredState", "metadata: {name: fan}", "l0: &l0 [lol]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]")
    lines.append(f"resources: *l{levels}")
    refused_or_accepted("\n".join(lines) + "\n")

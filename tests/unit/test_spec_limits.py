"""Hostile desired states are refused quickly and cheaply, each with a message that says what to do: an alias
bomb, an oversized file, absurd nesting, too many resources."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workflows.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_RESOURCES, Limits
from workflows.registry import Registry, default_registry
from workflows.spec import Problem, SpecError, load_file, load_text

HEADER = "apiVersion: converge/v1\nkind: DesiredState\nmetadata: {name: hostile}\n"


def alias_bomb() -> str:
    """The "billion laughs": nine levels of nine aliases each, 9**9 strings once expanded."""
    lines = [HEADER.rstrip("\n"), 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    lines.append("resources: *i")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


def only_problem(text: str | bytes, registry: Registry, limits: Limits | None = None) -> Problem:
    with pytest.raises(SpecError) as caught:
        if limits is None:
            load_text(text, "estate.yaml", registry)
        else:
            load_text(text, "estate.yaml", registry, limits)
    assert caught.value.exit_code == 2
    (problem,) = caught.value.problems
    return problem


def test_the_alias_bomb_is_under_six_hundred_bytes() -> None:
    assert len(alias_bomb().encode()) < 600


def test_an_alias_bomb_is_refused_at_the_alias_that_passes_the_limit(registry: Registry) -> None:
    problem = only_problem(alias_bomb(), registry)

    assert "alias bomb" in problem.message and "write repeated values out" in problem.message
    assert problem.line is not None and 4 < problem.line <= 13


def test_an_alias_bomb_costs_under_a_second_and_a_hundred_megabytes(tmp_path: Path) -> None:
    # A fresh process, so that its peak memory is the bomb's alone; tracemalloc sees every allocation.
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    script = textwrap.dedent(
        f"""
        import json, time, tracemalloc
        from workflows.registry import default_registry
        from workflows.spec import SpecError, load_file
        registry = default_registry()
        tracemalloc.start()
        start = time.perf_counter()
        try:
            load_file({str(bomb)!r}, registry)
            refused = False
        except SpecError:
            refused = True
        elapsed = time.perf_counter() - start
        print(json.dumps({{"refused": refused, "s": elapsed, "peak": tracemalloc.get_traced_memory()[1]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)

    assert measured["refused"]
    assert measured["s"] < 1.0
    assert measured["peak"] < 100 * 2**20


def test_aliases_within_the_limit_still_work(registry: Registry) -> None:
    text = HEADER + "resources:\n"
    text += "  - {kind: directory, name: a, role: web, spec: &spec {path: /srv/a}}\n"
    text += "  - {kind: directory, name: b, role: db, spec: *spec}\n"

    state = load_text(text, "estate.yaml", registry)

    assert [res.spec["path"] for res in state.resources] == ["/srv/a", "/srv/a"]


def test_a_recursive_alias_is_refused(registry: Registry) -> None:
    problem = only_problem(HEADER + "resources: &r [*r]\n", registry)

    assert problem.line == 4 and "recursive alias" in problem.message


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(
    tmp_path: Path, registry: Registry
) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(HEADER.encode() + b"resources: []\n#" + b"x" * MAX_FILE_BYTES + b"\n")

    with pytest.raises(SpecError) as caught:
        load_file(big, registry)

    (problem,) = caught.value.problems
    assert problem.file == str(big)
    assert f"larger than {MAX_FILE_BYTES:,} bytes" in problem.message and "split it" in problem.message


def test_text_over_the_size_limit_is_refused_in_bytes_not_characters(registry: Registry) -> None:
    # 2 bytes of UTF-8 a character: under the limit in characters, over it in bytes.
    text = HEADER + "resources: []\n# " + "é" * (MAX_FILE_BYTES // 2 + 1) + "\n"

    problem = only_problem(text, registry)

    assert "larger than" in problem.message


def test_nesting_deeper_than_the_limit_is_refused(registry: Registry) -> None:
    depth = MAX_DEPTH + 1
    problem = only_problem(HEADER + "resources: []\nx: " + "[" * depth + "]" * depth + "\n", registry)

    assert problem.line == 5 and f"more than {MAX_DEPTH} levels deep" in problem.message
    assert "flatten it" in problem.message


def test_absurd_nesting_is_refused_with_the_same_message(registry: Registry) -> None:
    problem = only_problem(HEADER + "resources: []\nx: " + "[" * 100_000 + "]" * 100_000 + "\n", registry)

    assert f"more than {MAX_DEPTH} levels deep" in problem.message


def test_an_alias_counts_the_depth_of_what_it_names(registry: Registry) -> None:
    nested = "[" * 40 + "]" * 40
    text = HEADER + f"resources: []\nx: &deep {nested}\ny: " + "[" * 30 + "*deep" + "]" * 30 + "\n"

    problem = only_problem(text, registry)

    assert problem.line == 6 and "levels deep (aliases expanded)" in problem.message


def test_too_many_resources_are_refused_at_the_first_one_over(registry: Registry) -> None:
    items = [f"  - {{kind: wait_for, name: w{i}, role: r, spec: {{seconds: 0}}}}" for i in range(12_000)]
    text = HEADER + "resources:\n" + "\n".join(items) + "\n"

    problem = only_problem(text, registry)

    assert problem.line == 5 + MAX_RESOURCES
    assert f"more than {MAX_RESOURCES:,} resources" in problem.message and "split it" in problem.message


def test_too_many_resources_given_through_an_alias_are_refused(registry: Registry) -> None:
    many = (
        "["
        + ", ".join(f"{{kind: wait_for, name: w{i}, role: r, spec: {{seconds: 0}}}}" for i in range(30))
        + "]"
    )

    with pytest.raises(SpecError) as caught:
        load_text(
            HEADER + f"all: &all {many}\nresources: *all\n", "estate.yaml", registry, Limits(max_resources=20)
        )

    by_field = {problem.field: problem.message for problem in caught.value.problems}
    assert "more than 20 resources" in by_field["resources"] and "unknown key" in by_field["all"]


def test_wider_limits_let_a_bigger_estate_through(registry: Registry) -> None:
    items = [f"  - {{kind: wait_for, name: w{i}, role: r, spec: {{seconds: 0}}}}" for i in range(30)]
    text = HEADER + "resources:\n" + "\n".join(items) + "\n"

    assert only_problem(text, registry, Limits(max_resources=20)).line == 25
    assert len(load_text(text, "estate.yaml", registry, Limits(max_resources=30)).resources) == 30


def test_a_value_quoted_in_a_message_is_cut_before_it_is_turned_into_text(registry: Registry) -> None:
    # The alias limit lifted: the bomb reaches the checks, which quote the 9**8 strings of each item.
    unlimited = Limits(max_alias_expansion=10**12)

    with pytest.raises(SpecError) as caught:
        load_text(alias_bomb(), "estate.yaml", registry, unlimited)

    shown = [p.message for p in caught.value.problems if p.field.startswith("resources[")]
    assert len(shown) == 9 and all("got [[" in message and len(message) < 200 for message in shown)

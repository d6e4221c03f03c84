"""9. Templating cost: spec load and plan of 10,000 templated resources against 10,000 plain ones.

In process (`load_text` then `plan`, no store, no agents): what templates add to what the engine does for
every apply and plan. The two estates are the planning benchmark's mix of kinds (workflows.plan's input),
the same text but for the templates: in the templated one every file's `path` and `content` and every
command's `run` and `creates` are templates of `vars` (each resource's text its own, so nothing is
rendered from a cache of another resource's), rendered to the plain estate's values.
"""

from __future__ import annotations

import gc
import re
import time

from tests.bench.harness import BenchContext
from tests.bench.planning import estate
from tests.bench.report import BenchResult, Target, median
from workflows import templates
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text

NAME = "templating"
TITLE = "9. Templating: planning 10,000 templated resources vs plain"
SIZE = 10_000


def templated(n: int) -> str:
    """The planning estate with its paths, contents and commands written as templates of vars."""
    text = re.sub(r"(path|creates): /srv/bench/([^,}]*)", r'\1: "{{ vars.root }}/\2"', estate(n))
    text = text.replace("touch /srv/bench/", "touch {{ vars.root }}/").replace('"line ', '"{{ vars.line }} ')
    return text.replace("resources:\n", "vars: {root: /srv/bench, line: line}\nresources:\n", 1)


def measure(text: str) -> float:
    registry = default_registry()
    templates.clear_caches()  # cold, as a new desired state is: nothing parsed or compiled before
    gc.collect()
    start = time.perf_counter()
    desired = load_text(text, "bench.yaml", registry)
    plan(desired, "bench")
    return time.perf_counter() - start


def run(ctx: BenchContext, result: BenchResult) -> None:
    size = 1_000 if ctx.quick else SIZE
    repeats = 3 if ctx.quick else 5
    plain_text, templated_text = estate(size), templated(size)
    plain = load_text(plain_text, "p", default_registry()).resources
    rendered = load_text(templated_text, "t", default_registry()).resources
    assert [r.spec for r in plain] == [r.spec for r in rendered], "the templates must render the plain estate"
    times: dict[str, list[float]] = {"plain": [], "templated": []}
    for _ in range(repeats):  # interleaved, so that a slower moment of the machine weighs on both
        times["plain"].append(measure(plain_text))
        times["templated"].append(measure(templated_text))
    plain_s, templated_s = median(times["plain"]), median(times["templated"])
    ratio = templated_s / plain_s
    ctx.say(f"templating: {size:,} plain {plain_s:.2f} s, templated {templated_s:.2f} s, ratio {ratio:.2f}x")
    strings = len(re.findall(r'"[^"]*\{\{[^"]*"', templated_text))
    result.row(f"{size:,} plain resources: load + plan", plain_s, "s", f"median of {repeats}")
    result.row(f"{size:,} templated resources: load + plan", templated_s, "s", f"median of {repeats}")
    result.row("templated / plain", ratio, "x", "the figure: what templates cost the planning of an apply")
    result.row(
        "per template rendered",
        (templated_s - plain_s) / max(strings, 1) * 1e6,
        "us",
        f"{strings:,} templated strings",
    )
    result.targets.append(Target.at_most("templated / plain", ratio, 3, "x"))
    result.raw["runs"] = times
    result.notes.append(
        "in process, one Python: load_text (parse, render, validate) then plan; no store, no agents. Runs "
        "interleaved, medians of each."
    )

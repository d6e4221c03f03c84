"""The console's page times at scale: `python -m tests.bench.console [--quick]`.

The store (SQLite, as `converge up` makes it) is filled directly through the store API, without running
anything: one workflow of 10,000 steps and 1,000 one-step workflows. Then each console page is fetched
through the engine's console routes in process (starlette's TestClient, no guard: the page's own cost):
the workflow page (its first and its last page of 200 steps), its live fragment, and the workflows list
(active, and history filtered by name). Results in tests/bench/results/console/latest.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from starlette.testclient import TestClient

from common.settings import Settings
from common.store import open_store
from engine import console
from engine.auth import Authenticator
from engine.core import Engine
from workflows.limits import Limits
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text

OUT = Path(__file__).resolve().parent / "results" / "console" / "latest.md"


def desired(name: str, n: int) -> str:
    lines = [
        f"  - {{kind: file, name: f{i}, role: web, spec: {{path: /tmp/x/f{i}, content: x}}"
        + (f", depends_on: [file/f{i - 1}]}}" if i else "}")
        for i in range(n)
    ]
    return (
        f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: {name}}}\nresources:\n"
        + "\n".join(lines)
    )


def timed(client: TestClient, url: str, rounds: int) -> tuple[float, float, int]:
    """Median and worst milliseconds of `rounds` GETs of `url`, and the page's size."""
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
        size = len(answer.content)
    return statistics.median(times), max(times), size


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    steps_n, workflows_n, rounds = (1_000, 100, 3) if quick else (10_000, 1_000, 10)
    root = Path(tempfile.mkdtemp(prefix="converge-bench-console-"))
    store = open_store(f"sqlite:///{root / 'store.db'}")
    registry = default_registry()
    limits = Limits(max_resources=max(steps_n, 10_000))
    started = time.perf_counter()
    big = desired("big", steps_n)
    store.create_workflow(plan(load_text(big, "big.yaml", registry, limits), "big0000000001"), big)
    for i in range(workflows_n):
        source = desired(f"estate-{i}", 1)
        store.create_workflow(plan(load_text(source, "e.yaml", registry), f"wf{i:010d}"), source)
    fill_s = time.perf_counter() - started
    none = cast(Any, None)
    engine = Engine(Settings(), store, none, none, registry, none)
    api = FastAPI()
    console.install(api, engine, Authenticator(store))
    pages = [
        ("workflow page, steps 1-200", "/console/workflows/big0000000001"),
        (f"workflow page, last 200 of {steps_n}", f"/console/workflows/big0000000001?page={steps_n // 200}"),
        ("workflow fragment (the 2 s poll)", "/console/fragments/workflows/big0000000001"),
        (f"workflows list ({workflows_n + 1} active, page 1)", "/console/workflows"),
        ("workflows list, last page", f"/console/workflows?page={(workflows_n + 1) // 50 + 1}"),
        ("workflows list filtered by name", "/console/workflows?name=estate-99"),
        ("workflows fragment (the 2 s poll)", "/console/fragments/workflows"),
    ]
    with TestClient(api) as client:
        rows = [(label, *timed(client, url, rounds)) for label, url in pages]
    store.close()
    lines = [
        "# Console page times",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m tests.bench.console"
        + (" --quick`" if quick else "`")
        + f": SQLite store, one workflow of {steps_n:,} steps and {workflows_n:,} one-step workflows"
        + f" (filled through the store API in {fill_s:.1f} s), {rounds} GETs of each page in process.",
        "",
        "| page | median ms | worst ms | bytes |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {label} | {med:.1f} | {worst:.1f} | {size:,} |" for label, med, worst, size in rows),
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

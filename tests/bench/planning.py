"""3. Planning scale: validate, plan and persist desired states of 1,000, 10,000 and 100,000 resources.

Each measurement runs in a fresh Python process (`python -m tests.bench.planning SIZE FILE DB`), so that
its peak resident set size belongs to that size alone (VmHWM, whose mark is reset just before loading
through /proc/self/clear_refs; `ru_maxrss` where that is not possible). The child imports everything, reads
the file and opens a fresh SQLite store first; then it times `load_text` (parse and validate),
`plan` and `store.create_workflow` (one transaction) and prints JSON. Memory is reported both as the
whole process's peak RSS (the target) and as its growth over the RSS before loading.

The generated estate mixes the built-in kinds in groups of ten: a directory, seven files that depend on
it, a command that depends on one of the files, and a 0 s wait; sixteen roles.
"""

from __future__ import annotations

import itertools
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.harness import REPO_ROOT, BenchContext, BenchError, workdir
from tests.bench.report import BenchResult, Target, median

NAME = "planning"
TITLE = "3. Planning scale: validate, plan, persist"


def estate(n: int) -> str:
    lines = ["apiVersion: converge/v1", "kind: DesiredState", f"metadata: {{name: plan-{n}}}", "resources:"]
    for i in range(n):
        g, j, role = i // 10, i % 10, f"r{(i // 10) % 16}"
        if j == 0:
            lines.append(
                f"  - {{kind: directory, name: d{g}, role: {role}, "
                f'spec: {{path: /srv/bench/d{g}, mode: "0755"}}}}'
            )
        elif j < 8:
            lines.append(
                f"  - {{kind: file, name: f{g}-{j}, role: {role}, depends_on: [directory/d{g}], "
                f'spec: {{path: /srv/bench/d{g}/f{j}, content: "line {i}\\n", mode: "0644"}}}}'
            )
        elif j == 8:
            lines.append(
                f"  - {{kind: command, name: c{g}, role: {role}, depends_on: [file/f{g}-1], "
                f'spec: {{run: "touch /srv/bench/d{g}/done", creates: /srv/bench/d{g}/done}}}}'
            )
        else:
            lines.append(f"  - {{kind: wait_for, name: w{g}, role: {role}, spec: {{seconds: 0}}}}")
    return "\n".join(lines) + "\n"


def run(ctx: BenchContext, result: BenchResult) -> None:
    plan_sizes = [(1_000, 5), (10_000, 3)] if ctx.quick else [(1_000, 5), (10_000, 3), (100_000, 1)]
    measured: dict[int, dict[str, Any]] = {}
    with workdir(ctx.root, NAME, ctx.keep) as wd:
        for size, repeats in plan_sizes:
            path = wd / f"estate-{size}.yaml"
            path.write_text(estate(size))
            runs = [child_run(size, path, wd / f"store-{size}-{k}.db") for k in range(repeats)]
            for k in range(repeats):
                (wd / f"store-{size}-{k}.db").unlink(missing_ok=True)
            best = {key: median([r[key] for r in runs]) for key in runs[0]}
            measured[size] = best
            ctx.say(
                f"planning: {size:,} resources in {best['total_s']:.2f} s, "
                f"peak RSS {best['maxrss_mb']:.0f} MB (median of {repeats})"
            )
    result.raw["runs"] = measured
    for size, m in measured.items():
        detail = (
            f"load+validate {m['load_s']:.2f} s, plan {m['plan_s']:.2f} s, persist {m['persist_s']:.2f} s"
        )
        result.row(f"{size:,} resources: time", m["total_s"], "s", detail)
        result.row(f"{size:,} resources: per resource", m["total_s"] / size * 1e6, "us", "")
        result.row(
            f"{size:,} resources: peak RSS",
            m["maxrss_mb"],
            "MB",
            f"whole process; +{m['growth_mb']:.0f} MB over {m['rss_before_mb']:.0f} MB before loading",
        )
    sizes = sorted(measured)
    for small, big in itertools.pairwise(sizes):
        t_ratio = measured[big]["total_s"] / measured[small]["total_s"]
        m_ratio = measured[big]["growth_mb"] / max(measured[small]["growth_mb"], 0.1)
        scale = big / small
        result.row(
            f"growth {small:,} -> {big:,}: time",
            t_ratio,
            "x",
            f"for {scale:g}x the resources; exponent {math.log(t_ratio) / math.log(scale):.2f} (1 = linear)",
        )
        result.row(
            f"growth {small:,} -> {big:,}: memory",
            m_ratio,
            "x",
            f"RSS growth over the baseline; exponent {math.log(max(m_ratio, 1e-9)) / math.log(scale):.2f}",
        )
    if 10_000 in measured:
        m = measured[10_000]
        result.targets.append(Target.at_most("10,000 resources: time", m["total_s"], 2, "s"))
        result.targets.append(Target.at_most("10,000 resources: peak RSS", m["maxrss_mb"], 300, "MB"))
    result.notes.append(
        "time: median of the runs per size (5, 3 and 1 for 100,000), each figure its own median; memory: "
        "the peak RSS "
        "(VmHWM, its mark reset just before loading) of a fresh process per run; not tracemalloc, which slows "
        "the work down several times"
    )


def child_run(size: int, path: Path, db: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.planning", str(size), str(path), str(db)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"planning {size} resources failed: {done.stderr[-2000:]}")
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return values


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1024 / 1024


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM), so that the peak measured is the work's, not the imports'."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    """VmHWM (peak RSS since the last reset), else ru_maxrss (peak since the process started)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(size: int, path: Path, db: Path) -> None:
    """In a fresh process: load, plan and persist one estate; print the measurements as JSON."""
    from common.store import open_store
    from workflows.limits import Limits
    from workflows.plan import plan
    from workflows.registry import default_registry
    from workflows.spec import load_text

    data = path.read_bytes()
    registry = default_registry()
    store = open_store(f"sqlite:///{db}")
    _reset_peak()
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    # past the limits an operator's file is read under: the bench measures how reading scales
    desired = load_text(data, path.name, registry, Limits(max_bytes=len(data) + 1, max_resources=size + 1))
    t1 = time.perf_counter()
    workflow_plan = plan(desired, "bench")
    t2 = time.perf_counter()
    store.create_workflow(workflow_plan, data.decode())
    t3 = time.perf_counter()
    if len(workflow_plan.steps) != size:
        raise SystemExit(f"planned {len(workflow_plan.steps)} steps for {size} resources")
    maxrss_mb = _peak_mb()
    store.close()
    print(
        json.dumps(
            {
                "load_s": t1 - t0,
                "plan_s": t2 - t1,
                "persist_s": t3 - t2,
                "total_s": t3 - t0,
                "rss_before_mb": rss_before,
                "maxrss_mb": maxrss_mb,
                "growth_mb": maxrss_mb - rss_before,
            }
        )
    )


if __name__ == "__main__":
    child(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))

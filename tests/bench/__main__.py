"""`python -m tests.bench [NAME ...] [--quick]`: run the benchmarks (all, or those named).

Each benchmark starts its own private Redis and real processes, prints a table, and the run is written
to tests/bench/results/latest.json and latest.md with the machine it ran on. Exit code 0 when every
benchmark selected ran (targets missed do not fail the run: they are in the report), 1 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from rich.console import Console

from tests.bench import (
    cancel,
    display,
    failover,
    heartbeats,
    idle,
    latency,
    planning,
    resume,
    templating,
    throughput,
)
from tests.bench.harness import BenchContext, Timer, load_average, machine
from tests.bench.report import BenchResult, print_result, write_json, write_markdown

BENCHES: dict[str, ModuleType] = {
    m.NAME: m
    for m in (throughput, latency, planning, cancel, resume, failover, heartbeats, display, idle, templating)
}
RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHES)} (all)")
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run, not a measurement")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and process logs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json/latest.md go")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="throughput: one more Converge run under py-spy, stacks in --out",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    args.names = args.names or list(BENCHES)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    root = Path(tempfile.mkdtemp(prefix="converge-bench-"))
    ctx = BenchContext(
        quick=args.quick, keep=args.keep, root=root, console=console, out=args.out, profile=args.profile
    )
    header = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m tests.bench", shlex.join(argv)]).strip(),
        "quick": args.quick,
        "machine": machine(),
    }
    m = header["machine"]
    console.print(
        f"[bold]Converge benchmarks[/] on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"Redis {m['redis_server']}, Celery {m['celery']}{' [yellow](quick)[/]' if args.quick else ''}"
    )
    total = Timer()
    results: list[BenchResult] = []
    for name in args.names:
        results.append(run_one(ctx, name, BENCHES[name].run, BENCHES[name].TITLE))
        print_result(console, results[-1])
    header["duration_s"] = total.elapsed()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "latest.json", header, results)
    write_markdown(args.out / "latest.md", header, results)
    failed = [r.name for r in results if r.status == "failed"]
    if args.keep or failed:
        console.print(f"work directory and logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    console.print(
        f"[bold]{len(results)} benchmarks in {header['duration_s']:.0f} s[/]; "
        f"results in {args.out / 'latest.md'} and latest.json"
        + (f"; [red]failed: {', '.join(failed)}[/]" if failed else "")
    )
    return 1 if failed else 0


def run_one(
    ctx: BenchContext, name: str, bench: Callable[[BenchContext, BenchResult], None], title: str
) -> BenchResult:
    result = BenchResult(name=name, title=title, load_start=load_average())
    timer = Timer()
    ctx.console.rule(title)
    try:
        bench(ctx, result)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.status = "failed"
        result.notes.append(f"{type(exc).__name__}: {exc}")
        ctx.console.print(traceback.format_exc(), markup=False, highlight=False)
    result.elapsed_s = timer.elapsed()
    result.load_end = load_average()
    return result


if __name__ == "__main__":
    sys.exit(main())

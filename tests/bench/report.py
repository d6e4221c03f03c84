"""Benchmark results: rows, targets and notes; printed as rich tables, written as JSON and Markdown."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

Value = float | int | str | None


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0-100) with linear interpolation between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class Row:
    """One measured quantity. `value` is a rate, a ratio or a distribution statistic, never one raw time."""

    metric: str
    value: Value
    unit: str = ""
    detail: str = ""


@dataclass
class Target:
    """A goal of the issue and whether this run met it."""

    name: str
    value: Value
    limit: str
    met: bool | None

    @classmethod
    def at_most(cls, name: str, value: float | None, limit: float, unit: str) -> Target:
        met = None if value is None or math.isnan(value) else value <= limit
        return cls(name, _num(value), f"<= {limit:g} {unit}".strip(), met)

    @classmethod
    def at_least(cls, name: str, value: float | None, limit: float, unit: str = "") -> Target:
        met = None if value is None or math.isnan(value) else value >= limit
        return cls(name, _num(value), f">= {limit:g} {unit}".strip(), met)


@dataclass
class BenchResult:
    name: str
    title: str
    status: str = "ok"  # ok | not available | failed
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    load_start: float = 0.0  # the machine's 1-minute load average when the benchmark started, and ended
    load_end: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    def row(self, metric: str, value: Value, unit: str = "", detail: str = "") -> None:
        self.rows.append(Row(metric, _num(value), unit, detail))


def _num(value: Value) -> Value:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(f"{value:.4g}")
    return value


def fmt(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _met(target: Target) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[target.met]


# -- output ------------------------------------------------------------------------------------------------


def print_result(console: Console, result: BenchResult) -> None:
    title = f"{result.title} [{result.status}, {result.elapsed_s:.0f} s, load {result.load_start:.1f}]"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("detail", overflow="fold")
    for row in result.rows:
        table.add_row(row.metric, fmt(row.value), row.unit, row.detail)
    console.print(table)
    if result.targets:
        targets = Table(title=f"{result.title}: targets", title_justify="left")
        targets.add_column("target")
        targets.add_column("value", justify="right")
        targets.add_column("limit")
        targets.add_column("", justify="center")
        for t in result.targets:
            style = {True: "green", False: "bold red", None: "yellow"}[t.met]
            targets.add_row(t.name, fmt(t.value), t.limit, f"[{style}]{_met(t)}[/]")
        console.print(targets)
    for note in result.notes:
        console.print(f"  [dim]- {note}[/]")
    console.print()


def write_json(path: Path, header: dict[str, Any], results: list[BenchResult]) -> None:
    document = {**header, "benchmarks": {r.name: asdict(r) for r in results}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    tmp.replace(path)


def write_markdown(path: Path, header: dict[str, Any], results: list[BenchResult]) -> None:
    m = header["machine"]
    lines = [
        "# Converge benchmarks",
        "",
        f"Run {header['date']} with `{header['command']}` in {header['duration_s']:.0f} s"
        + (" (quick variant: small N, not comparable with a full run)" if header["quick"] else "")
        + ".",
        "",
        "| machine | |",
        "| --- | --- |",
        f"| cores | {m['cores']} ({m['usable_cores']} usable), {m['cpu']} |",
        f"| memory | {m['memory_gb']} GB |",
        f"| platform | {m['platform']} |",
        f"| Python | {m['python']} |",
        f"| Redis server | {m['redis_server']} (redis-py {m['redis_py']}) |",
        f"| Celery | {m['celery']} (kombu {m['kombu']}) |",
        f"| SQLAlchemy / SQLite | {m['sqlalchemy']} / {m['sqlite']} |",
        f"| commit | {m['commit']}{' + uncommitted changes' if m['uncommitted_changes'] else ''} |",
        "",
    ]
    summary = [t for r in results for t in r.targets]
    if summary:
        lines += ["## Targets", "", "| target | value | limit | |", "| --- | ---: | --- | --- |"]
        lines += [f"| {t.name} | {fmt(t.value)} | {t.limit} | {_met(t)} |" for t in summary]
        lines.append("")
    for r in results:
        lines += [
            f"## {r.title}",
            "",
            f"Status: **{r.status}**, {r.elapsed_s:.0f} s; load average {r.load_start:.1f} at the start, "
            f"{r.load_end:.1f} at the end (on {m['cores']} cores).",
            "",
        ]
        if r.rows:
            lines += ["| metric | value | unit | detail |", "| --- | ---: | --- | --- |"]
            lines += [f"| {x.metric} | {fmt(x.value)} | {x.unit} | {_md(x.detail)} |" for x in r.rows]
            lines.append("")
        lines += [f"- {_md(note)}" for note in r.notes]
        if r.notes:
            lines.append("")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

"""1. Throughput: Converge no-op steps against raw Celery no-op tasks, same Redis, same worker settings.

Converge: one workflow of N `wait_for {seconds: 0}` steps POSTed to the API; the time runs from just
before the POST to the workflow's `finished_at` in the store (written by the engine when the last
status event is committed). The store is polled read-only with SQLite at 20 Hz, so polling costs the
engine nothing and the poll period does not enter the measurement.

Celery: N `delay()` of a no-op task, then `get()` of each result (result backend on the same Redis); and,
without a result backend, N `delay()` of a task that INCRs a counter, polled every 2 ms.

Two matched pairs, each on an otherwise idle stack (one engine, one agent, one baseline worker):

- events on: the agent as shipped (Celery task events on, what Flower needs) against
  `celery worker ... -E`; the headline ratio;
- events off: the agent with `--no-task-events` against the worker without `-E`, plus the Celery variant
  without a result backend as an extra row.

The agent and the worker of the first pair are stopped before those of the second are started. Within a
pair, runs alternate Converge, Celery (A B A B ...) for `rounds` rounds and medians are compared; the one
not being measured is idle (blocked on its broker connection). Each run also records the CPU seconds every
process spent on it (from /proc), per step or task: on a shared machine that is the steadier comparison.
The single-step workflows and the chains run with the first pair (as shipped, worker with `-E`).
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery, chain

from tests.bench import profile
from tests.bench.celery_baseline import NOOP, NOOP_COUNTED
from tests.bench.harness import (
    BenchContext,
    BenchError,
    Child,
    CpuMeter,
    Stack,
    desired_state,
    noop_step,
    wait_until,
    workdir,
)
from tests.bench.report import BenchResult, Target, median, percentile

NAME = "throughput"
TITLE = "1. Throughput: Converge vs raw Celery"
SUBMITTERS = 4


@dataclass
class Pair:
    """The runs of one matched pair: rates and CPU per item by contender (converge, celery, celery_nr)."""

    events: bool
    runs: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return "events on" if self.events else "events off"

    def rate(self, key: str) -> float:
        return median(self.runs[key])

    def each(self, key: str) -> str:
        return f"median of {len(self.runs[key])}: " + ", ".join(f"{x:.0f}" for x in self.runs[key])


def run(ctx: BenchContext, result: BenchResult) -> None:
    n = 200 if ctx.quick else 2000
    rounds = 2 if ctx.quick else 5
    n_workflows = 100 if ctx.quick else 1000
    chain_len = 20 if ctx.quick else 200
    result.notes.append(
        f"N = {n}; two matched pairs, {rounds} rounds each alternating Converge, Celery (delay() then get()) "
        "(and Celery without results in the events-off pair); one agent `--throttle 20` with autoscale off (20 pool processes at all times) and one "
        "`celery worker -P prefork -c 20 --prefetch-multiplier 1 -O fair`, both late ack, prefetch 1 and "
        "JSON, on the same private Redis. Events on: the agent as shipped (task events on) against the worker "
        "with `-E`; events off: the agent with `--no-task-events` against the worker without `-E`. The agent "
        "and worker of one pair are stopped before the next pair's start. Log levels differ: the agent runs "
        "as shipped (INFO), the baseline worker at WARNING"
    )
    with workdir(ctx.root, NAME, ctx.keep) as wd, Stack(wd) as stack:
        ctx.say("throughput: starting Redis and the engine")
        stack.start_engine()
        result.raw["logs"] = str(stack.logs)

        on = Pair(events=True)
        agent, worker = start_pair(ctx, stack, on)
        measure_pair(ctx, stack, on, n, rounds, agent, worker)
        as_shipped: list[tuple[str, float, str, str]] = []
        extras(ctx, stack, on, as_shipped, n_workflows, chain_len, worker.proc.pid)
        if ctx.profile:
            profile_converge(ctx, result, stack, agent.proc.pid, n)
        stop_pair(stack, agent)

        off = Pair(events=False)
        agent, worker = start_pair(ctx, stack, off)
        measure_pair(ctx, stack, off, n, rounds, agent, worker)
        stop_pair(stack, agent)
    result.raw.update(
        rates={p.tag: p.runs for p in (on, off)}, cpu_s_per_item={p.tag: p.cpu for p in (on, off)}
    )

    for pair in (on, off):
        c, b = pair.rate("converge"), pair.rate("celery")
        who = "as shipped (task events on)" if pair.events else "with --no-task-events"
        worker_flag = "worker -E" if pair.events else "worker without -E"
        result.row(f"Converge {who}, 1 workflow of {n} steps", c, "steps/s", pair.each("converge"))
        result.row(f"Celery {worker_flag}, {n} tasks, delay() then get()", b, "tasks/s", pair.each("celery"))
        ratios = [x / y for x, y in zip(pair.runs["converge"], pair.runs["celery"], strict=True)]
        result.row(
            f"ratio vs Celery, same settings ({pair.tag})",
            c / b,
            "x",
            f"of the medians; per round {', '.join(f'{x:.2f}' for x in ratios)}; target >= 1.0, goal 1.5",
        )
    b_nr = off.rate("celery_nr")
    result.row(
        f"Celery worker without -E, {n} tasks, no result backend", b_nr, "tasks/s", off.each("celery_nr")
    )
    result.row(
        "ratio Converge (events off) / Celery without results",
        off.rate("converge") / b_nr,
        "x",
        "of the medians; an extra, not the target's comparison",
    )
    result.row(
        "task events: rate off / on, Converge",
        off.rate("converge") / on.rate("converge"),
        "x",
        f"Celery (delay() then get()): {off.rate('celery') / on.rate('celery'):.2f}",
    )
    for pair in (on, off):
        ratio = pair.rate("converge") / pair.rate("celery")
        what = f"throughput ratio vs Celery, same settings, {pair.tag} (N={n})"
        result.targets.append(Target.at_least(what, ratio, 1.0, "x"))
        result.targets.append(Target.at_least(f"{what}, goal", ratio, 1.5, "x"))

    for pair in (on, off):
        cpu_rows(result, pair)
    for metric, value, unit, detail in as_shipped:
        result.row(metric, value, unit, detail)


def start_pair(ctx: BenchContext, stack: Stack, pair: Pair) -> tuple[Child, Child]:
    """The agent and the baseline worker of one pair (none of another pair may be running)."""
    flag = "task events on (as shipped)" if pair.events else "--no-task-events"
    ctx.say(f"throughput: {pair.tag}: starting an agent with {flag} and the worker{' -E' * pair.events}")
    agent_id = "bench-events" if pair.events else "bench-no-events"
    agent = stack.start_agent(agent_id, task_events=None if pair.events else False, autoscale=False)
    worker = stack.start_baseline_worker(events=pair.events)
    return agent, worker


def stop_pair(stack: Stack, agent: Child) -> None:
    stack.stop(agent.name)
    stack.stop("celery-baseline")


def measure_pair(
    ctx: BenchContext, stack: Stack, pair: Pair, n: int, rounds: int, agent: Child, worker: Child
) -> None:
    assert stack.baseline is not None and stack.redis_server.process is not None
    app = stack.baseline
    meter = CpuMeter(
        {
            "engine": stack.children["engine"].proc.pid,
            "agent": agent.proc.pid,
            "celery worker": worker.proc.pid,
            "redis": stack.redis_server.process.pid,
        }
    )
    ctx.say(f"throughput: {pair.tag}: warm-up (discarded)")
    converge_steps(stack, 50, "warmup-" + uuid.uuid4().hex[:8])
    celery_with_results(app, 50)
    contenders: list[tuple[str, str, Callable[[], float]]] = [
        ("converge", "Converge steps/s", lambda: converge_steps(stack, n, uuid.uuid4().hex[:8])),
        ("celery", "Celery tasks/s", lambda: celery_with_results(app, n)),
    ]
    if not pair.events:
        celery_without_results(stack, app, 50)
        contenders.append(
            ("celery_nr", "Celery (no results) tasks/s", lambda: celery_without_results(stack, app, n))
        )
    for key, _, _ in contenders:
        pair.runs[key], pair.cpu[key] = [], []
    for r in range(rounds):
        for key, label, measure in contenders:
            meter.start()
            pair.runs[key].append(measure())
            pair.cpu[key].append({k: v / n for k, v in meter.stop().items()})
            ctx.say(f"throughput: {pair.tag}: round {r + 1}/{rounds} {label} {pair.runs[key][-1]:.0f}")


def extras(
    ctx: BenchContext,
    stack: Stack,
    pair: Pair,
    rows: list[tuple[str, float, str, str]],
    n_workflows: int,
    chain_len: int,
    worker_pid: int,
) -> None:
    """Single-step workflows and chains, with the agent as shipped and the worker with -E."""
    assert stack.baseline is not None
    app = stack.baseline
    b = pair.rate("celery")
    meter = CpuMeter({"engine": stack.children["engine"].proc.pid, "celery worker": worker_pid})
    ctx.say(f"throughput: {n_workflows} single-step workflows, one submitter, then {SUBMITTERS}")
    for submitters in (1, SUBMITTERS):
        meter.start()
        submit_rate, done_rate = single_step_workflows(stack, n_workflows, submitters)
        used = meter.stop()
        how = "one after another" if submitters == 1 else f"by {submitters} threads at once"
        rows.append(
            (
                f"Converge, {n_workflows} single-step workflows, {submitters} submitter(s)",
                done_rate,
                "workflows/s",
                f"as shipped; POSTed {how} (keep-alive httpx); first POST to last finished_at; "
                f"ratio vs Celery -E tasks/s {done_rate / b:.2f}",
            )
        )
        rows.append(
            (
                "  POSTs alone",
                submit_rate,
                "workflows/s",
                f"engine CPU {1000 * used['engine'] / n_workflows:.2f} ms per workflow",
            )
        )

    ctx.say(f"throughput: chain of {chain_len} dependent steps, Converge and Celery alternating")
    per_step: list[float] = []
    celery_per_link: list[float] = []
    gaps: list[float] = []
    chain_rounds = 2 if ctx.quick else 3
    for _ in range(chain_rounds):
        step_s, gap_s = converge_chain(stack, chain_len, uuid.uuid4().hex[:8])
        per_step.append(step_s)
        gaps.extend(gap_s)
        celery_per_link.append(celery_chain(app, chain_len))
    ps, cl = median(per_step), median(celery_per_link)
    rows += [
        (
            f"Converge, chain of {chain_len}: per step",
            ps * 1000,
            "ms",
            f"as shipped; (submit to finished_at) / {chain_len}; median of {chain_rounds}",
        ),
        (
            "  gap step k finished -> k+1 started: p50",
            percentile(gaps, 50) * 1000,
            "ms",
            f"{len(gaps)} gaps, from the store (agent clock)",
        ),
        ("  gap: p99", percentile(gaps, 99) * 1000, "ms", ""),
        (
            f"Celery chain of {chain_len} no-op tasks: per link",
            cl * 1000,
            "ms",
            f"worker -E; (apply_async to last get()) / {chain_len}; median of {chain_rounds}",
        ),
        ("ratio Converge / Celery chain throughput", cl / ps, "x", "per-link time Celery / Converge"),
    ]


def cpu_rows(result: BenchResult, pair: Pair) -> None:
    """CPU milliseconds per step (or task), by process, median over the rounds."""

    def per_item(key: str) -> dict[str, float]:
        names = sorted({k for d in pair.cpu[key] for k in d})
        return {k: median([d.get(k, 0.0) for d in pair.cpu[key]]) * 1000 for k in names}

    labels = {
        "converge": f"Converge CPU per step ({pair.tag})",
        "celery": f"Celery CPU per task ({'-E' if pair.events else 'no -E'})",
        "celery_nr": "Celery (no results, no -E) CPU per task",
    }
    totals: dict[str, float] = {}
    for key, label in labels.items():
        if key not in pair.cpu:
            continue
        used = {k: v for k, v in per_item(key).items() if v >= 0.02}
        totals[key] = sum(used.values())
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1]))
        result.row(label, totals[key], "ms CPU", parts)
    result.row(
        f"CPU ratio Celery / Converge per item ({pair.tag})",
        totals["celery"] / totals["converge"],
        "x",
        "delay() then get(); on 2 cores the CPU per step bounds the rate: > 1 means Converge is cheaper",
    )


def converge_steps(stack: Stack, n: int, tag: str) -> float:
    """One workflow of `n` independent no-op steps; steps per second from submit to finished."""
    source = desired_state(f"tp-{tag}", [noop_step(f"s{i}") for i in range(n)])
    workflow_id, submitted = stack.submit(source)
    _, finished = stack.wait_finished(workflow_id, timeout_s=max(60, n / 10))
    return n / (finished - submitted)


def celery_with_results(app: Celery, n: int) -> float:
    task = app.tasks[NOOP]
    started = time.perf_counter()
    results = [task.delay() for _ in range(n)]
    for r in results:
        r.get(timeout=max(60, n / 10))
    elapsed = time.perf_counter() - started
    for r in results:
        r.forget()
    return n / elapsed


def celery_without_results(stack: Stack, app: Celery, n: int) -> float:
    task = app.tasks[NOOP_COUNTED]
    key = f"bench:count:{uuid.uuid4().hex}"
    client = stack.redis_client()
    deadline = time.monotonic() + max(60, n / 10)
    started = time.perf_counter()
    for _ in range(n):
        task.delay(key)
    while int(client.get(key) or 0) < n:
        if time.monotonic() > deadline:
            raise BenchError(f"the baseline worker ran {client.get(key)!r} of {n} tasks in time")
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    client.delete(key)
    client.close()
    return n / elapsed


def single_step_workflows(stack: Stack, n: int, submitters: int) -> tuple[float, float]:
    """Submit `n` one-step workflows; (POSTs per second, workflows finished per second)."""
    tag = uuid.uuid4().hex[:8]
    sources = [desired_state(f"one-{tag}-{i}", [noop_step("s")]) for i in range(n)]
    first = time.time()
    if submitters == 1:
        for source in sources:
            stack.submit(source)
    else:
        clients = [stack.new_api_client() for _ in range(submitters)]
        with ThreadPoolExecutor(submitters) as pool:
            list(pool.map(lambda i: stack.submit(sources[i], client=clients[i % submitters]), range(n)))
        for client in clients:
            client.close()
    posted = time.time()

    def all_done() -> float | None:
        count, last = stack.db.execute(
            "SELECT count(*), max(finished_at) FROM converge_workflows WHERE name LIKE ? AND state = 'succeeded'",
            (f"one-{tag}-%",),
        ).fetchone()
        stack.check_alive()
        return float(last) if count == n else None

    finished = wait_until(all_done, max(120, n / 5), f"{n} single-step workflows")
    return n / (posted - first), n / (finished - first)


def converge_chain(stack: Stack, n: int, tag: str) -> tuple[float, list[float]]:
    """A chain of `n` dependent no-op steps: seconds per step, and the gaps between consecutive steps."""
    resources = [noop_step("c0")] + [noop_step(f"c{i}", f"c{i - 1}") for i in range(1, n)]
    workflow_id, submitted = stack.submit(desired_state(f"chain-{tag}", resources))
    _, finished = stack.wait_finished(workflow_id, timeout_s=max(60, n))
    steps = stack.steps(workflow_id)
    gaps = [b[2] - a[3] for a, b in itertools.pairwise(steps) if a[3] is not None and b[2] is not None]
    return (finished - submitted) / n, gaps


def celery_chain(app: Celery, n: int) -> float:
    task = app.tasks[NOOP]
    started = time.perf_counter()
    chain(*[task.si() for _ in range(n)]).apply_async().get(timeout=max(60, n))
    return (time.perf_counter() - started) / n


def profile_converge(ctx: BenchContext, result: BenchResult, stack: Stack, agent_pid: int, n: int) -> None:
    """One more Converge run under py-spy (engine, and agent with its pool); top frames into the notes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        result.notes.append("--profile: py-spy is not installed (`.venv/bin/pip install py-spy`)")
        return
    ctx.out.mkdir(parents=True, exist_ok=True)
    targets = {"engine": stack.children["engine"].proc.pid, "agent": agent_pid}
    spies: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in targets.items():
        out = ctx.out / f"profile-{name}.txt"
        argv = [spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "100"]
        argv += ["--format", "raw", "--nonblocking", "-o", str(out)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spies[name] = (proc, out)
    time.sleep(2)
    ctx.say("throughput: one more Converge run under py-spy (its rate is not reported)")
    converge_steps(stack, n, "profile-" + uuid.uuid4().hex[:8])
    for proc, _ in spies.values():
        proc.send_signal(signal.SIGINT)
    for name, (proc, out) in spies.items():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not out.exists():
            result.notes.append(f"--profile: py-spy wrote nothing for the {name} (ptrace not permitted?)")
            continue
        result.notes.append(f"--profile: {name} stacks (py-spy raw, --gil) in {out}")
        for line in profile.summary(out, top=12):
            result.notes.append(f"--profile {name}: {line}")

"""9. Idle agents: memory with a fixed pool against the autoscaled one, and what growing the pool costs.

- Idle PSS: one agent of throttle 20, started with the fixed pool (`autoscale = false`, 20 pool processes as
  agents had before) and then with the autoscaler as shipped (pool_min 1, keepalive 10 s), each measured
  once idle (its process count steady for 3 s, after the pool shrank to pool_min). PSS (proportional set
  size: shared pages split between the processes sharing them) summed over the agent's main process and its
  children, from /proc/PID/smaps_rollup; so the sum is what the agent costs the host, with nothing shared
  counted twice.
- Growing: a burst of 20 `command` steps that each log a line when they start and then hold, blocked
  opening a FIFO (no polling, so that the steps already running cost nothing while the pool grows) until
  the bench opens it for writing, against an idle agent. From just before the POST to the 20th start line (polled every
  10 ms), for the fixed pool (nothing to grow) and the autoscaled one (growing from 1 to 20); between rounds
  the gate opens, the workflow finishes and (autoscaled) the pool shrinks back to 1.
- `converge up` of the quick start (its paths moved under the bench's work folder, so the quick start's own
  folder is left alone), once converged and idle: how many processes its tree holds and their total PSS,
  with the agents' pools fixed (CONVERGE_AGENT_AUTOSCALE=false) and autoscaled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.bench.harness import REPO_ROOT, BenchContext, BenchError, Stack, wait_until, workdir
from tests.bench.report import BenchResult, Target, median

NAME = "idle"
TITLE = "9. Idle agents: memory and the pool's growth"
THROTTLE = 20
QUICKSTART = REPO_ROOT / "examples" / "quickstart.yaml"


def tree(root: int) -> list[int]:
    """`root` and every live descendant of it, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in (b"Z", b"X"):
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def footprint(root: int) -> tuple[int, float]:
    """Processes in `root`'s tree, and their summed PSS in MiB."""
    pids = tree(root)
    return len(pids), sum(pss_kb(pid) for pid in pids) / 1024


def when_steady(root: int, timeout_s: float, steady_s: float = 3.0) -> tuple[int, float]:
    """The tree's footprint once its process count has not changed for `steady_s`."""
    deadline = time.monotonic() + timeout_s
    count, since = len(tree(root)), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = len(tree(root))
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= steady_s:
            return footprint(root)
    raise BenchError(f"the process tree of {root} did not settle within {timeout_s:g}s")


def gated_burst(root: Path, gate: Path, count: int, tag: str) -> str:
    log = root / "steps.log"
    lines = []
    for i in range(count):
        done = root / f"done-{i}"
        run = f"echo start >> {log}; cat {gate} > /dev/null; touch {done}"
        lines.append(f'{{kind: command, name: c{i}, role: bench, spec: {{run: "{run}", creates: {done}}}}}')
    head = f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: idle-{tag}}}\nresources:\n"
    return head + "".join(f"  - {line}\n" for line in lines)


def starts(log: Path) -> int:
    return log.read_text().count("start") if log.exists() else 0


def grow_round(stack: Stack, wd: Path, tag: str) -> float:
    """Seconds from just before the POST to the 20th step started."""
    root = wd / tag
    root.mkdir(parents=True)
    gate, log = root / "gate", root / "steps.log"
    os.mkfifo(gate)
    workflow_id, submitted = stack.submit(gated_burst(root, gate, THROTTLE, tag))
    wait_until(lambda: starts(log) >= THROTTLE, 120, f"{THROTTLE} steps started", interval_s=0.01)
    took = time.time() - submitted
    release(gate)
    stack.wait_finished(workflow_id, 120)
    return took


def release(gate: Path) -> None:
    """Let every step blocked on the FIFO go: open it for writing, long enough for a step that logged its
    start line but had not opened it yet, then close it (each reader sees the end of the file)."""
    fd = os.open(gate, os.O_WRONLY)  # at least one reader holds it open
    time.sleep(1.0)
    os.close(fd)


def agent_run(ctx: BenchContext, stack: Stack, wd: Path, autoscale: bool, rounds: int) -> dict[str, float]:
    label = "autoscale" if autoscale else "fixed"
    stack.env["CONVERGE_AGENT_AUTOSCALE"] = "true" if autoscale else "false"
    agent_id = f"idle-{label}"
    child = stack.start_agent(agent_id, throttle=THROTTLE)
    pid = child.proc.pid
    idle = 1 if autoscale else THROTTLE
    wait_until(lambda: len(tree(pid)) == idle + 1, 60, f"{label}: {idle} pool processes")
    processes, pss = when_steady(pid, 60)
    ctx.say(f"idle: {label}: {processes} processes, {pss:.1f} MiB PSS")
    grows = []
    for i in range(rounds):
        grows.append(grow_round(stack, wd, f"{label}-{i}-{uuid.uuid4().hex[:6]}"))
        ctx.say(f"idle: {label}: round {i + 1}: 20 started {grows[-1]:.2f} s after the POST")
        wait_until(lambda: len(tree(pid)) == idle + 1, 60, f"{label}: the pool back to {idle}")
    stack.stop(f"agent-{agent_id}")
    return {"processes": processes, "pss": pss, "grow": median(grows), "grow_max": max(grows)}


def up_run(ctx: BenchContext, wd: Path, autoscale: bool) -> tuple[int, float]:
    label = "autoscale" if autoscale else "fixed"
    home, files = wd / f"up-{label}", wd / f"up-{label}-files"
    estate = wd / f"quickstart-{label}.yaml"
    estate.write_text(QUICKSTART.read_text().replace("/tmp/converge-quickstart", str(files)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    env |= {"CONVERGE_AGENT_AUTOSCALE": "true" if autoscale else "false", "PYTHONPATH": str(REPO_ROOT)}
    out = wd / f"up-{label}.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "up", str(estate), "--home", str(home)],
            env=env,
            cwd=wd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: b"converge is running" in out.read_bytes() or proc.poll() is not None, 180, "up")
        if proc.poll() is not None:
            raise BenchError(f"`converge up` exited {proc.returncode}; see {out}")
        processes, pss = when_steady(proc.pid, 120, steady_s=5.0 if autoscale else 3.0)
        ctx.say(f"idle: converge up, {label}: {processes} processes, {pss:.1f} MiB PSS")
        return processes, pss
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(ctx: BenchContext, result: BenchResult) -> None:
    rounds = 2 if ctx.quick else 5
    with workdir(ctx.root, NAME, ctx.keep) as wd:
        with Stack(wd / "stack") as stack:
            ctx.say("idle: starting Redis and the engine")
            stack.start_engine()
            result.raw["logs"] = str(stack.logs)
            fixed = agent_run(ctx, stack, wd, autoscale=False, rounds=rounds)
            scaled = agent_run(ctx, stack, wd, autoscale=True, rounds=rounds)
        up_fixed = up_run(ctx, wd, autoscale=False)
        up_scaled = up_run(ctx, wd, autoscale=True)

    result.notes.append(
        f"one agent, --throttle {THROTTLE}; autoscaled as shipped (pool_min 1, pool_keepalive_s 10); "
        f"{rounds} bursts of {THROTTLE} gated `command` steps per pool"
    )
    result.row(
        "idle agent, fixed pool: processes", fixed["processes"], "", "main process + 20 pool processes"
    )
    result.row("idle agent, fixed pool: PSS", round(fixed["pss"], 1), "MiB", "sum over the agent's tree")
    result.row("idle agent, autoscaled: processes", scaled["processes"], "", "main process + pool_min")
    result.row("idle agent, autoscaled: PSS", round(scaled["pss"], 1), "MiB", "sum over the agent's tree")
    result.row("idle PSS, autoscaled / fixed", round(scaled["pss"] / fixed["pss"], 3), "x")
    for label, run_ in (("fixed pool", fixed), ("autoscaled, growing 1 -> 20", scaled)):
        result.row(
            f"POST -> 20 steps running, {label}: median",
            round(run_["grow"], 3),
            "s",
            f"max {run_['grow_max']:.3f} s",
        )
    result.row("cost of growing (median, autoscaled - fixed)", round(scaled["grow"] - fixed["grow"], 3), "s")
    result.row(
        "converge up (quick start), fixed pools: processes", up_fixed[0], "", "Redis, engine, 3 agents"
    )
    result.row("converge up (quick start), fixed pools: PSS", round(up_fixed[1], 1), "MiB")
    result.row("converge up (quick start), autoscaled: processes", up_scaled[0])
    result.row("converge up (quick start), autoscaled: PSS", round(up_scaled[1], 1), "MiB")
    result.targets.append(Target.at_most("idle agent's processes, autoscaled", scaled["processes"], 3, ""))
    result.raw.update(fixed=fixed, autoscaled=scaled, up_fixed=up_fixed, up_autoscaled=up_scaled)
